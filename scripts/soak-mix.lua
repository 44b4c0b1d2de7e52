-- wrk script for scripts/soak.py: a weighted mix of requests against the test config
-- (tests/harness/config.py), and a check of every answer.
--
--   wrk -t2 -c16 -d20s -s scripts/soak-mix.lua http://127.0.0.1:PORT -- main   # serverListener
--   wrk -t1 -c4  -d20s -s scripts/soak-mix.lua http://127.0.0.1:PORT2 -- body  # upstreamListener
--
-- A response does not say which request it answers (connections interleave in a thread), so
-- each answer is classified by what it carries: the backends echo the uid header
-- (x-seen-uid), the body's first bytes (x-seen-body), the unit header the library set
-- (x-seen-unit) and their site (x-backend-site); direct responses have their body; the fault
-- abort is the only 418. An answer is "misrouted" when its site or unit is not the one its uid
-- selects (1-100 s1, 101-200 s2, other i64 s3; no/bad uid: no unit). At the end one line
--   SOAK_RESULT {json}
-- carries the counters of every thread and wrk's summary.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function body_of(n, uid)
   local head = uid and ('{"uid": ' .. uid .. ', "pad": "') or '{"pad": "'
   return head .. string.rep("x", math.max(0, n - #head - 2)) .. '"}'
end

-- {weight, name, method, path, headers, body}
local function main_mix()
   local huge = string.rep("9", 3000)
   return {
      {10, "uid_s1", "GET", "/u", {uid = "2"}},
      {10, "uid_s2", "GET", "/u", {uid = "150"}},
      {10, "uid_s3", "GET", "/u", {uid = "201"}},
      {4, "uid_negative", "GET", "/u", {uid = "-7"}},
      {8, "no_uid", "GET", "/any/./path?q=1", {}},
      {4, "forged_unit", "GET", "/f", {["x-mosn-on-envoy-unit"] = "s1"}},
      {4, "bad_uid_abc", "GET", "/b", {uid = "abc"}},
      {3, "bad_uid_huge", "GET", "/h", {uid = huge}},
      {3, "bad_uid_overflow", "GET", "/o", {uid = "92233720368547758070"}},
      {6, "direct", "GET", "/exact/Path", {}},
      {3, "redirect", "GET", "/redir/x", {}},
      {3, "abort_418", "GET", "/pfc/x", {}},
      {2, "delay_400ms", "GET", "/d", {["x-case"] = "delay"}},
      {10, "failover", "GET", "/fo", {["x-case"] = "failover"}},
      {5, "post_small", "POST", "/p", {uid = "42", ["content-type"] = "application/json"}, body_of(200)},
      {3, "post_8k", "POST", "/p", {uid = "120", ["content-type"] = "application/json"}, body_of(8192)},
      {1, "post_64k", "POST", "/p", {uid = "777", ["content-type"] = "application/json"}, body_of(65536)},
   }
end

-- The upstream listener: the UNIT driver reads the uid from the body (the library buffers it).
local function body_mix()
   return {
      {6, "body_uid_s1", "POST", "/bu", {["x-case"] = "bodyuid", ["content-type"] = "application/json"}, body_of(300, 7)},
      {6, "body_uid_s2", "POST", "/bu", {["x-case"] = "bodyuid", ["content-type"] = "application/json"}, body_of(4000, 160)},
      {3, "body_uid_s3", "POST", "/bu", {["x-case"] = "bodyuid", ["content-type"] = "application/json"}, body_of(40000, 999)},
      {2, "body_uid_bad", "POST", "/bu", {["x-case"] = "bodyuid", ["content-type"] = "application/json"}, '{"uid": "abc"}'},
      {3, "body_rewrite", "POST", "/rw", {["x-case"] = "rewrite", ["content-type"] = "text/plain"}, "a secret here"},
   }
end

function init(args)
   math.randomseed(os.time() + 7919 * (id or 0))
   mode = args[1] or "main"
   local mix = mode == "body" and body_mix() or main_mix()
   reqs, weights, names, total_w = {}, {}, {}, 0
   for i, m in ipairs(mix) do
      reqs[i] = wrk.format(m[3], m[4], m[5], m[6])
      names[i] = m[2]
      total_w = total_w + m[1]
      weights[i] = total_w
   end
   sent, statuses, kinds = {}, {}, {}
end

function request()
   local r = math.random() * total_w
   for i = 1, #weights do
      if r < weights[i] then
         sent[names[i]] = (sent[names[i]] or 0) + 1
         return reqs[i]
      end
   end
   sent[names[#names]] = (sent[names[#names]] or 0) + 1
   return reqs[#reqs]
end

local function bump(t, k) t[k] = (t[k] or 0) + 1 end

-- The unit a uid string selects, "-" for none (not an integer, or outside i64).
local function unit_of(uid)
   if uid == nil or uid == "-" or not uid:match("^%-?%d+$") then return "-" end
   local digits = uid:gsub("^%-", "")
   digits = digits:gsub("^0+", "")
   if #digits > 18 then return "-" end -- past i64 (the mix never sends 19 digits)
   local n = tonumber(uid)
   if n >= 1 and n <= 100 then return "s1" end
   if n >= 101 and n <= 200 then return "s2" end
   return "s3"
end

local function header(h, name)
   return h[name] or h[name:lower()]
end

function response(status, headers, body)
   bump(statuses, tostring(status))
   local site = header(headers, "x-backend-site")
   if status == 418 then bump(kinds, "aborted_418"); return end
   if status == 302 then bump(kinds, "redirect"); return end
   if site == nil then
      if status == 200 and body == "exact" then bump(kinds, "direct") else bump(kinds, "unexpected_local") end
      return
   end
   if status ~= 200 then bump(kinds, "upstream_non200"); return end
   if site == "fo" then bump(kinds, "failover"); return end
   local uid = header(headers, "x-seen-uid")
   if uid == "-" and mode == "body" then
      -- The uid came in the body: x-seen-body starts with {"uid": N
      local b = header(headers, "x-seen-body") or ""
      uid = b:match('^{"uid": (%-?%d+)') or "-"
      if b:match("^a %[redacted%]") then bump(kinds, "rewritten"); return end
   end
   local want = unit_of(uid)
   local seen_unit = header(headers, "x-seen-unit")
   if seen_unit ~= want or (want ~= "-" and site ~= want) then
      bump(kinds, "misrouted")
      if not misroute_example then
         misroute_example = "uid=" .. tostring(uid):sub(1, 40) .. " unit=" .. tostring(seen_unit) .. " site=" .. site
      end
   elseif want == "-" then
      bump(kinds, "routed_no_unit")
   else
      bump(kinds, "routed_unit")
   end
end

local function json(v)
   if type(v) == "table" then
      local parts = {}
      for k, x in pairs(v) do
         table.insert(parts, string.format("%q", tostring(k)) .. ": " .. json(x))
      end
      return "{" .. table.concat(parts, ", ") .. "}"
   elseif type(v) == "string" then
      return string.format("%q", v)
   elseif v == nil then
      return "null"
   end
   return tostring(v)
end

local function merge(into, t)
   for k, v in pairs(t or {}) do into[k] = (into[k] or 0) + v end
end

function done(summary, latency, requests)
   local all_sent, all_status, all_kinds, example = {}, {}, {}, nil
   for _, t in ipairs(threads) do
      merge(all_sent, t:get("sent"))
      merge(all_status, t:get("statuses"))
      merge(all_kinds, t:get("kinds"))
      example = example or t:get("misroute_example")
   end
   local out = {
      answered = summary.requests,
      duration_us = summary.duration,
      bytes = summary.bytes,
      errors = summary.errors,
      latency_us = {p50 = latency:percentile(50), p99 = latency:percentile(99), max = latency.max},
      sent = all_sent,
      statuses = all_status,
      kinds = all_kinds,
      misroute_example = example,
   }
   io.write("SOAK_RESULT " .. json(out) .. "\n")
end
