-- Queries for scripts/bench-webapp.sh replicas: GET /teams/{id} over TEAMS
-- teams (ids 1..TEAMS, default 100).
local teams = tonumber(os.getenv("TEAMS") or "100")

init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

request = function()
  return wrk.format("GET", "/teams/" .. math.random(1, teams))
end
