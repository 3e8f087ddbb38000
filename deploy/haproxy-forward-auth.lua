-- samlha forward-auth for HAProxy 2.5 and later (core.httpclient), loaded
-- by haproxy-forward-auth.cfg: the action samlha_auth asks samlsp's
-- /saml/auth whether the request has a session.
--
--   http-request lua.samlha_auth <auth address> <identity headers>
--
-- <auth address> is where /saml/auth is asked (an HAProxy address such as
-- abns@samlha-auth, a frontend balancing the samlsp replicas);
-- <identity headers> are the headers samlsp sets, separated by commas
-- (X-Samlha-User,X-Email,...). samlsp gets
-- the client's headers (but its body, and the hop-by-hop ones) and the
-- original request in X-Forwarded-Method, -Proto, -Host, -Uri and -For
-- (believed from HAProxy's address, samlsp --trusted-proxies):
--   2xx: each identity header is removed from the request and set from
--        samlsp's answer (a client's copy is never left), samlsp's cookies
--        (samlha_*) are taken out of the Cookie header, and the request
--        goes on to the application;
--   any other answer (401, a redirect that starts the login, 403, 400) is
--        sent to the client as samlsp gave it;
--   no answer: 503, X-Samlha-Cause auth-unavailable.

local hop_by_hop = {
	["connection"] = true, ["keep-alive"] = true, ["te"] = true, ["trailer"] = true,
	["transfer-encoding"] = true, ["upgrade"] = true, ["proxy-connection"] = true,
	["content-length"] = true, ["expect"] = true, ["host"] = true,
	-- the original request is named by HAProxy below, never by the client
	["x-forwarded-method"] = true, ["x-forwarded-proto"] = true, ["x-forwarded-host"] = true,
	["x-forwarded-uri"] = true, ["x-forwarded-for"] = true, ["x-original-uri"] = true,
}

-- Headers of samlsp's refusals that the client may see.
local reply_headers = {
	"content-type", "location", "cache-control", "set-cookie", "www-authenticate",
	"x-samlha-instance", "x-samlha-cause", "retry-after",
}

-- without_samlha_cookies drops every cookie named samlha_* from a Cookie
-- header value.
local function without_samlha_cookies(value)
	local kept = {}
	for pair in string.gmatch(value, "[^;]+") do
		local p = pair:gsub("^%s+", ""):gsub("%s+$", "")
		if p ~= "" and p:sub(1, 7) ~= "samlha_" then
			kept[#kept + 1] = p
		end
	end
	return table.concat(kept, "; ")
end

-- values turns HAProxy's header values (indexed from 0) into a list.
local function values(v)
	local list = {}
	for i = 0, #v do
		list[#list + 1] = v[i]
	end
	return list
end

core.register_action("samlha_auth", { "http-req" }, function(txn, addr, names)
	local identity = {}
	for n in string.gmatch(names, "[^,%s]+") do
		identity[#identity + 1] = n
	end
	local hdrs = {}
	for name, vals in pairs(txn.http:req_get_headers()) do
		local n = string.lower(name)
		if not hop_by_hop[n] then
			hdrs[n] = values(vals)
		end
	end
	local host = txn.sf:req_hdr("host") or ""
	local proto = "http"
	local tls = txn.sf:ssl_fc()
	if tls == true or tls == 1 then
		proto = "https"
	end
	hdrs["x-forwarded-method"] = { txn.sf:method() }
	hdrs["x-forwarded-proto"] = { proto }
	hdrs["x-forwarded-host"] = { host }
	hdrs["x-forwarded-uri"] = { txn.sf:pathq() }
	hdrs["x-forwarded-for"] = { txn.sf:src() }

	local hc = core.httpclient()
	local res = hc:get({ url = "http://samlsp/saml/auth", dst = addr, headers = hdrs, timeout = 10000 })
	if res == nil or res.status == nil or res.status == 0 then
		local reply = txn:reply({ status = 503, headers = {
			["content-type"] = { "application/json" }, ["x-samlha-cause"] = { "auth-unavailable" },
			["cache-control"] = { "no-store" }, ["retry-after"] = { "1" },
		}, body = '{"error":"auth-unavailable"}\n' })
		txn:done(reply)
		return
	end
	if res.status < 200 or res.status > 299 then
		local out = {}
		for _, n in ipairs(reply_headers) do
			if res.headers[n] ~= nil then
				out[n] = values(res.headers[n])
			end
		end
		txn:done(txn:reply({ status = res.status, headers = out, body = res.body or "" }))
		return
	end
	for _, name in ipairs(identity) do
		txn.http:req_del_header(name)
		local v = res.headers[string.lower(name)]
		if v ~= nil and v[0] ~= nil and v[0] ~= "" then
			txn.http:req_set_header(name, v[0])
		end
	end
	-- Every Cookie header (HTTP/2 sends one per cookie), as one.
	local cookies = hdrs["cookie"]
	if cookies ~= nil then
		local rest = without_samlha_cookies(table.concat(cookies, "; "))
		txn.http:req_del_header("cookie")
		if rest ~= "" then
			txn.http:req_set_header("cookie", rest)
		end
	end
end, 2)
