-- wrk script: pipelining. Each request wrk sends is DEPTH GET requests back to back
-- (default 16); wrk counts every response, and records one latency per batch.
--
--   wrk -t1 -c50 -d10s -s tools/bench/pipeline.lua http://127.0.0.1:8080/ -- 16

local batch

init = function(args)
  local depth = tonumber(args[1] or "16")
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil, "/")
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end
