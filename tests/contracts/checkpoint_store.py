"""The CheckpointStore (and JobLocks) contract: one suite, run unchanged against every adapter.

A subclass provides the `stores` fixture: two handles on one empty store, as two processes
would have them (the in-memory adapter: the same instance twice; MariaDB: two adapters on
two engines). Both ports are implemented by one class in each adapter.
"""

from __future__ import annotations

import threading
import uuid
from typing import Protocol

import pytest

from migrator.errors import JobRunning
from migrator.ports import CheckpointStore, JobLocks


class Store(CheckpointStore, JobLocks, Protocol):
    pass


def fresh_job() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


class CheckpointStoreContract:
    @pytest.fixture
    def stores(self) -> tuple[Store, Store]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, stores: tuple[Store, Store]) -> Store:
        return stores[0]

    def test_nothing_saved_is_none_and_an_empty_list(self, store: Store) -> None:
        assert store.load(fresh_job()) is None
        assert store.jobs() == []
        store.delete(fresh_job())  # no error when there is nothing to forget
        assert store.jobs() == []

    def test_a_save_comes_back_and_the_last_save_wins(self, stores: tuple[Store, Store]) -> None:
        one, other = stores
        job = fresh_job()
        one.save(job, "backfill", '{"next": 1}')
        assert other.load(job) == ("backfill", '{"next": 1}')
        other.save(job, "backfill_plan", '{"next": 2}')
        assert one.load(job) == ("backfill_plan", '{"next": 2}')

    def test_jobs_are_listed_by_name_with_their_kind_and_state(self, store: Store) -> None:
        store.save("b/plan", "backfill_plan", "{}")
        store.save("b", "backfill", '{"x": 1}')
        store.save("a", "repair", "[]")
        assert store.jobs() == [
            ("a", "repair", "[]"),
            ("b", "backfill", '{"x": 1}'),
            ("b/plan", "backfill_plan", "{}"),
        ]

    def test_delete_forgets_that_job_only(self, store: Store) -> None:
        keep, forget = fresh_job(), fresh_job()
        store.save(keep, "backfill", "1")
        store.save(forget, "backfill", "2")
        store.delete(forget)
        assert store.load(forget) is None
        assert store.load(keep) == ("backfill", "1")

    def test_large_and_unicode_states_survive_unchanged(self, store: Store) -> None:
        job = fresh_job()
        state = '{"rooms": [' + ",".join(f"[{i},1,99,99]" for i in range(200_000)) + "]}"
        assert len(state) > 2_000_000
        store.save(job, "backfill_plan", state)
        assert store.load(job) == ("backfill_plan", state)
        text = '{"who": "運用チーム 😀", "why": "\\u0000 ok"}'
        store.save(job, "backfill", text)
        assert store.load(job) == ("backfill", text)

    @pytest.mark.parametrize(
        ("job", "kind", "state"),
        [
            ("", "backfill", "{}"),
            ("x" * 129, "backfill", "{}"),
            ("bad\njob", "backfill", "{}"),
            ("job ", "backfill", "{}"),
            (" job", "backfill", "{}"),
            ("job", "", "{}"),
            ("job", "k" * 33, "{}"),
            ("job", "backfill", None),
            (None, "backfill", "{}"),
        ],
    )
    def test_bad_input_is_refused_and_nothing_changes(
        self, store: Store, job: object, kind: object, state: object
    ) -> None:
        store.save("kept", "backfill", "{}")
        with pytest.raises(ValueError):
            store.save(job, kind, state)  # type: ignore[arg-type]
        assert store.jobs() == [("kept", "backfill", "{}")]

    def test_keys_are_exact(self, store: Store) -> None:
        """Job names differing in case are different jobs."""
        store.save("Backfill", "backfill", "A")
        store.save("backfill", "backfill", "a")
        store.save("backfill.x", "backfill", "x")
        assert store.load("Backfill") == ("backfill", "A")
        assert store.load("backfill") == ("backfill", "a")
        assert store.load("BACKFILL") is None

    # -- JobLocks ------------------------------------------------------------------------

    def test_a_held_job_is_refused_to_another_holder_until_released(
        self, stores: tuple[Store, Store]
    ) -> None:
        one, other = stores
        job = fresh_job()
        with one.hold(job) as lease:
            lease.check()
            with pytest.raises(JobRunning, match=job), other.hold(job):
                pass
            with pytest.raises(JobRunning), one.hold(job):
                pass
            with other.hold(fresh_job()):  # another job is free
                pass
            lease.check()  # a refused holder does not take the hold away
        with other.hold(job) as lease:
            lease.check()

    def test_a_hold_ends_when_its_body_raises(self, stores: tuple[Store, Store]) -> None:
        one, other = stores
        job = fresh_job()
        with pytest.raises(RuntimeError), one.hold(job):
            raise RuntimeError("the job failed")
        with other.hold(job):
            pass

    def test_of_many_at_once_exactly_one_holds(self, stores: tuple[Store, Store]) -> None:
        job = fresh_job()
        start = threading.Barrier(6)
        done = threading.Barrier(6)
        outcomes: list[str] = []
        lock = threading.Lock()

        def contend(store: Store) -> None:
            start.wait()
            try:
                with store.hold(job):
                    with lock:
                        outcomes.append("held")
                    done.wait()
                    return
            except JobRunning:
                with lock:
                    outcomes.append("refused")
            done.wait()

        threads = [threading.Thread(target=contend, args=(stores[i % 2],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["held"] + ["refused"] * 5
