-- wrk script for `pedulicovid-bench receipts --external`: distinct Kannel
-- DLR callbacks (status=1, final delivered), one per message, each on the
-- message's own signed callback path (`/callbacks/sim/{id}.{mac}`).
--
--   wrk -t T -c C -d 300s --latency -s scripts/receipts_wrk.lua URL -- PATHS_FILE T
--
-- PATHS_FILE has one `id path` line per message (the bench writes it).
-- Thread k of T sends lines k+1, k+1+T, ... so no message is sent twice. A
-- thread out of lines asks for /healthz once per connection (nothing
-- stored) and stops. wrk runs until -d or SIGINT whatever its threads do,
-- so bench_receipts_wrk.sh sends SIGINT once the server has taken every
-- callback.

local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  ids, paths = {}, {}
  for line in io.lines(args[1]) do
    local id, path = line:match("^(%d+) (%S+)$")
    ids[#ids + 1] = tonumber(id)
    paths[#paths + 1] = path
  end
  step = tonumber(args[2])
  next_line = 1 + tid
  -- wrk calls request() once on thread 0 to check the script, and never
  -- sends that request: let that call take a line before the first.
  if tid == 0 then
    next_line = next_line - step
  end
  done = false
end

function request()
  if next_line > #paths then
    done = true
    return wrk.format("GET", "/healthz")
  end
  local i = math.max(next_line, 1)
  next_line = next_line + step
  local id = ids[i]
  return wrk.format("GET", string.format(
    "%s?id=%d&status=1&fid=F%d&answer=id%%3AF%d+sub%%3A001+dlvrd%%3A001+submit+date%%3A2101140800"
    .. "+done+date%%3A2101140800+stat%%3ADELIVRD+err%%3A000+text%%3APEDULICOVID&ts=1610611200",
    paths[i], id, id, id))
end

function response(status, headers, body)
  if done then
    wrk.thread:stop()
  end
end
