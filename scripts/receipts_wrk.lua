-- wrk script for `pedulicovid-bench receipts --external`: distinct Kannel
-- DLR callbacks (status=1, final delivered), one per message id.
--
--   wrk -t T -c C -d 300s --latency -s scripts/receipts_wrk.lua URL -- CALLBACK_PATH FIRST_ID COUNT T
--
-- Thread k of T sends ids FIRST_ID + k, FIRST_ID + k + T, ... below
-- FIRST_ID + COUNT, so no id is sent twice. A thread out of ids asks for
-- /healthz once per connection (nothing stored) and stops. wrk runs until
-- -d or SIGINT whatever its threads do, so bench_receipts_wrk.sh sends
-- SIGINT once the server has taken every callback.

local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  path = args[1]
  first = tonumber(args[2])
  count = tonumber(args[3])
  step = tonumber(args[4])
  next_id = first + tid
  -- wrk calls request() once on thread 0 to check the script, and never
  -- sends that request: let that call take an id below the range.
  if tid == 0 then
    next_id = next_id - step
  end
  last = first + count
  done = false
end

function request()
  if next_id >= last then
    done = true
    return wrk.format("GET", "/healthz")
  end
  local id = next_id
  next_id = next_id + step
  return wrk.format("GET", string.format(
    "%s?id=%d&status=1&fid=F%d&answer=id%%3AF%d+sub%%3A001+dlvrd%%3A001+submit+date%%3A2101140800"
    .. "+done+date%%3A2101140800+stat%%3ADELIVRD+err%%3A000+text%%3APEDULICOVID&ts=1610611200",
    path, id, id, id))
end

function response(status, headers, body)
  if done then
    wrk.thread:stop()
  end
end
