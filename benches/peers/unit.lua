-- The UNIT driver's rule for the nginx Lua peers (`require "unit"`): the integer in `uid`
-- (spaces and tabs around it ignored) selects a site: 1-100 -> s1, 101-200 -> s2, any other
-- integer -> s3 (i64 approximated as at most 18 digits); anything else -> nil (no unit).
-- envoy-unit.lua carries the same function.
local match, tonumber = string.match, tonumber
local M = {}

function M.site(uid)
  if type(uid) ~= "string" then return nil end -- missing, or several headers
  local sign, digits = match(uid, "^[ \t]*([+-]?)(%d+)[ \t]*$")
  if digits == nil or #digits > 18 then return nil end
  local n = tonumber(digits)
  if sign == "-" then return "s3" end
  if n >= 1 and n <= 100 then return "s1" end
  if n >= 101 and n <= 200 then return "s2" end
  return "s3"
end

return M
