-- X-Matrix request authentication (loom.federation.xmatrix): building and
-- parsing the header, verifying signatures, and, differentially, that
-- Debian's python3-signedjson verifies loom's request signatures and that
-- loom verifies the ones it makes (the request object signed the same way).
local core = require "loom.core"
local crypto = require "loom.room.crypto"
local xmatrix = require "loom.federation.xmatrix"
local shell = require "support.shell"
local files = require "support.files"
local json = core.json

local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"

local key = assert(crypto.signing_key(("\7"):rep(32), "ed25519:a1", "origin.test"))

describe("X-Matrix authentication", function()
  it("signs a request that verifies with the origin's key, and fails when anything changes", function()
    local body = { pdus = {}, edus = { { edu_type = "m.typing", content = { x = 1 } } } }
    local h = assert(xmatrix.header(key, "dest.test", "PUT", "/_matrix/federation/v1/send/1", body))
    assert.matches('^X%-Matrix origin="origin.test",destination="dest.test",key="ed25519:a1",sig="[%w+/]+"$', h)
    local auth = assert(xmatrix.parse(h))
    assert.same({ "origin.test", "dest.test", "ed25519:a1" }, { auth.origin, auth.destination, auth.key })
    assert.is_true(xmatrix.verify(auth, "PUT", "/_matrix/federation/v1/send/1", body, key.public_key))
    assert.is_nil(xmatrix.verify(auth, "GET", "/_matrix/federation/v1/send/1", body, key.public_key))
    assert.is_nil(xmatrix.verify(auth, "PUT", "/_matrix/federation/v1/send/2", body, key.public_key))
    assert.is_nil(xmatrix.verify(auth, "PUT", "/_matrix/federation/v1/send/1", { pdus = {} }, key.public_key))
    assert.is_nil(xmatrix.verify(auth, "PUT", "/_matrix/federation/v1/send/1", nil, key.public_key))
    local other = assert(crypto.signing_key(("\8"):rep(32), "ed25519:a1", "origin.test"))
    assert.is_nil(xmatrix.verify(auth, "PUT", "/_matrix/federation/v1/send/1", body, other.public_key))
    local moved = { origin = auth.origin, destination = "evil.test", key = auth.key, sig = auth.sig }
    assert.is_nil(xmatrix.verify(moved, "PUT", "/_matrix/federation/v1/send/1", body, key.public_key))
  end)

  it("parses the forms other servers send: quoted or bare values, any order, spaces, no destination", function()
    local a = assert(xmatrix.parse('X-Matrix origin=a.test,key="ed25519:k",sig="c2ln"'))
    assert.same({ "a.test", nil, "ed25519:k", "c2ln" }, { a.origin, a.destination, a.key, a.sig })
    local b = assert(xmatrix.parse('x-matrix  sig="s" , key=ed25519:k2, destination="d.test:8448", origin="o.test"'))
    assert.same({ "o.test", "d.test:8448", "ed25519:k2", "s" }, { b.origin, b.destination, b.key, b.sig })
    local c = assert(xmatrix.parse('X-Matrix origin="we\\"ird",key="ed25519:k",sig="s"'))
    assert.equal('we"ird', c.origin)
  end)

  it("refuses malformed headers with a message", function()
    for _, bad in ipairs {
      'Bearer abc', 'X-Matrix', 'X-Matrix origin="a"', 'X-Matrix origin="a",key="ed25519:k"',
      'X-Matrix origin="a,key="ed25519:k",sig="s"', 'X-Matrix origin="a",origin="b",key="ed25519:k",sig="s"',
      'X-Matrix origin="a",key="rsa:k",sig="s"', 'X-Matrix origin="",key="ed25519:k",sig="s"',
      'X-Matrix =x', 'X-Matrix origin="a" key', ('X-Matrix origin="' .. ("a"):rep(5000) .. '",key="ed25519:k",sig="s"'),
    } do
      local ok, msg = xmatrix.parse(bad)
      assert.is_nil(ok, bad)
      assert.is_string(msg)
    end
    assert.is_nil(xmatrix.parse(nil))
  end)

  it("signs as signedjson does, and each verifies the other's", function()
    local dir = files.tmpdir("loom-xmatrix")
    local cases = {}
    for i = 1, 20 do
      local content = i % 3 ~= 0 and { n = i, s = ("é\"\\"):rep(i % 4), list = { i, true, json.null } } or nil
      local uri = "/_matrix/federation/v1/query/profile?user_id=%40u" .. i .. "%3Ao.test&field=displayname"
      local h = assert(xmatrix.header(key, "dest" .. i .. ".test", "POST", uri, content))
      local auth = assert(xmatrix.parse(h))
      cases[i] = { uri = uri, content = content, destination = "dest" .. i .. ".test", sig = auth.sig }
    end
    files.write(dir .. "/in.json", assert(json.encode(cases)))
    files.write(dir .. "/check.py", [[
import json, sys, base64
import signedjson.key, signedjson.sign
seed = base64.b64encode(bytes([7]) * 32).decode().rstrip("=")
sk = signedjson.key.decode_signing_key_base64("ed25519", "a1", seed)
vk = signedjson.key.get_verify_key(sk)
out = []
for c in json.load(open(sys.argv[1], encoding="utf-8")):
    obj = {"method": "POST", "uri": c["uri"], "origin": "origin.test", "destination": c["destination"]}
    if c.get("content") is not None:
        obj["content"] = c["content"]
    mine = signedjson.sign.sign_json(dict(obj), "origin.test", sk)["signatures"]["origin.test"]["ed25519:a1"]
    theirs = dict(obj, signatures={"origin.test": {"ed25519:a1": c["sig"]}})
    try:
        signedjson.sign.verify_signed_json(theirs, "origin.test", vk)
        ok = True
    except Exception:
        ok = False
    out.append({"verified": ok, "sig": mine})
json.dump(out, open(sys.argv[2], "w"))
]])
    local ok = os.execute(PYTHON .. " " .. shell.quote(dir .. "/check.py") .. " " .. shell.quote(dir .. "/in.json")
      .. " " .. shell.quote(dir .. "/out.json"))
    assert.is_true(ok == true or ok == 0, "python3-signedjson check failed to run")
    local out = assert(json.decode(files.read(dir .. "/out.json")))
    assert.equal(#cases, #out)
    for i, r in ipairs(out) do
      assert.is_true(r.verified, "signedjson rejects loom's signature of case " .. i)
      assert.equal(cases[i].sig, r.sig, "signatures differ in case " .. i)
      local auth = { origin = "origin.test", destination = cases[i].destination, key = "ed25519:a1", sig = r.sig }
      assert.is_true(xmatrix.verify(auth, "POST", cases[i].uri, cases[i].content, key.public_key))
    end
    files.remove_tree(dir)
  end)
end)
