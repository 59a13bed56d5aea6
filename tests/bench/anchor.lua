-- The `jwt_authn_cache_lua` configuration of `make bench`: what certificate binding (RFC 8705)
-- costs with Envoy's native filters. envoy.filters.http.jwt_authn has verified the token (or
-- found it in its cache) and put its payload in the dynamic metadata; this compares the
-- payload's cnf["x5t#S256"] with the SHA-256 thumbprint of the connection's client certificate.
-- Envoy gives that thumbprint as lowercase hex; x5t#S256 is base64url without padding.
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function char(n)
  return string.sub(ALPHABET, n + 1, n + 1)
end

local function hex_to_base64url(hex)
  if not hex or #hex ~= 64 or not string.match(hex, "^[0-9a-fA-F]+$") then
    return nil
  end
  local bytes = {}
  for i = 1, #hex, 2 do
    bytes[#bytes + 1] = tonumber(string.sub(hex, i, i + 1), 16)
  end
  local out = {}
  for i = 1, #bytes, 3 do
    local a, b, c = bytes[i], bytes[i + 1], bytes[i + 2]
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = char(math.floor(n / 262144) % 64)
    out[#out + 1] = char(math.floor(n / 4096) % 64)
    if b then out[#out + 1] = char(math.floor(n / 64) % 64) end
    if c then out[#out + 1] = char(n % 64) end
  end
  return table.concat(out)
end

local function deny(handle)
  handle:respond({[":status"] = "401",
                  ["www-authenticate"] = 'Bearer realm="api", error="invalid_token"'}, "")
end

function envoy_on_request(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.jwt_authn")
  local payload = meta and meta["jwt_payload"]
  local cnf = payload and payload["cnf"]
  local bound = type(cnf) == "table" and cnf["x5t#S256"] or nil
  local ssl = handle:streamInfo():downstreamSslConnection()
  local thumbprint = ssl and hex_to_base64url(ssl:sha256PeerCertificateDigest())
  if type(bound) ~= "string" or not thumbprint or bound ~= thumbprint then
    deny(handle)
  end
end
