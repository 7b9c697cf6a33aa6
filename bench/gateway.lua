-- wrk script of bench/gateway.py: a mix of the contract's message reads and writes over many
-- rooms, each request with the token of a member of its room.
--   wrk ... -s bench/gateway.lua <url> -- <rooms file> <write share> <seed>
-- The rooms file (written by bench/gateway.py) has one room a line: "room token id id id ...",
-- the ids being live messages of the room. Of the requests, <write share> are
-- POST /v2/rooms/{room}/messages (a form body), the rest are split evenly between
-- GET /v2/rooms/{room}/messages?force=1 and GET /v2/rooms/{room}/messages/{id}.
-- done() prints one line "WRK_JSON {...}" with the figures bench/gateway.py reads.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local rooms = {}
local write_share = 0.1
local sent = 0

function init(args)
  local path = args[1]
  write_share = tonumber(args[2] or "0.1")
  math.randomseed(tonumber(args[3] or "42") * 1000 + (id or 0))
  for line in io.lines(path) do
    local fields = {}
    for field in line:gmatch("%S+") do table.insert(fields, field) end
    if #fields >= 3 then
      local ids = {}
      for i = 3, #fields do table.insert(ids, fields[i]) end
      table.insert(rooms, { room = fields[1], token = fields[2], ids = ids })
    end
  end
  if #rooms == 0 then error("no rooms in " .. path) end
end

function request()
  local r = rooms[math.random(#rooms)]
  local headers = { ["X-ChatWorkToken"] = r.token }
  local dice = math.random()
  sent = sent + 1
  if dice < write_share then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    local body = "body=bench+gateway+" .. (id or 0) .. "-" .. sent
    return wrk.format("POST", "/v2/rooms/" .. r.room .. "/messages", headers, body)
  elseif dice < write_share + (1 - write_share) / 2 then
    return wrk.format("GET", "/v2/rooms/" .. r.room .. "/messages?force=1", headers)
  else
    local one = r.ids[math.random(#r.ids)]
    return wrk.format("GET", "/v2/rooms/" .. r.room .. "/messages/" .. one, headers)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
