-- spread joins over 200 teams of 1000 places (ids 1..200)
request = function()
  local id = math.random(1, 200)
  return wrk.format("POST", "/teams/" .. id .. "/players", {["Content-Type"] = "application/json"}, '{"name":"load"}')
end
