-- Commands for scripts/bench-webapp.sh lag: joins (70%) and moves (30%) over
-- TEAMS teams (ids 1..TEAMS, default 100). Each thread moves players it made
-- (the ids its own 201s answered with) to a random team; a move to the
-- player's own team records no event.
local teams = tonumber(os.getenv("TEAMS") or "100")
local players, n = {}, 0
local json = {["Content-Type"] = "application/json"}

init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

request = function()
  if n > 0 and math.random() < 0.3 then
    return wrk.format("POST", "/players/" .. players[math.random(1, n)] .. "/move", json,
      '{"team_id":' .. math.random(1, teams) .. '}')
  end
  return wrk.format("POST", "/teams/" .. math.random(1, teams) .. "/players", json, '{"name":"load"}')
end

response = function(status, headers, body)
  if status == 201 then
    local id = body:match('"id":(%d+)')
    if id then
      n = n + 1
      players[n] = id
    end
  end
end
