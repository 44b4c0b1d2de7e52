-- Envoy's Lua peer (envoy.filters.http.lua): the UNIT driver's rule (as unit.lua) picks the
-- site from `uid`; the cluster goes to the router in `x-mosn-cluster` (a `cluster_header`
-- route, re-matched after this filter), the unit in `x-mosn-on-envoy-unit` (a client-sent one
-- is replaced or removed).
local match, tonumber = string.match, tonumber

local function site(uid)
  if uid == nil then return nil end
  local sign, digits = match(uid, "^[ \t]*([+-]?)(%d+)[ \t]*$")
  if digits == nil or #digits > 18 then return nil end
  local n = tonumber(digits)
  if sign == "-" then return "s3" end
  if n >= 1 and n <= 100 then return "s1" end
  if n >= 101 and n <= 200 then return "s2" end
  return "s3"
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local unit = site(headers:get("uid"))
  if unit then
    headers:replace("x-mosn-cluster", unit)
    headers:replace("x-mosn-on-envoy-unit", unit)
  else
    headers:replace("x-mosn-cluster", "all_sites")
    headers:remove("x-mosn-on-envoy-unit")
  end
  handle:clearRouteCache()
end
