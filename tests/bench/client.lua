-- Client Envoy of `make bench`: the request path carries the credentials, because the load tool
-- can vary the URI from one request to the next but not a header.
--   /t/<token>           ->  Authorization: Bearer <token>
--   /t/<token>/<proof>   ->  Authorization: DPoP <token>, DPoP: <proof>   (for a DPoP entry)
--   anything else        ->  forwarded without credentials
-- The request then goes to /bench. Tokens and proofs are base64url with dots: no '/' inside.
function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or ""
  local token, proof = string.match(path, "^/t/([^/]+)/?([^/]*)$")
  if token then
    if proof ~= "" then
      headers:replace("authorization", "DPoP " .. token)
      headers:replace("dpop", proof)
    else
      headers:replace("authorization", "Bearer " .. token)
    end
  end
  headers:replace(":path", "/bench")
end
