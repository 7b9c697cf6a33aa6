"""Adapters of the new core's ports: embedded (in-process) and real (Kafka, HBase)."""
