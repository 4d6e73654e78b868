-- Real end-to-end encryption: matrix-js-sdk 36 with its Rust crypto
-- (initRustCrypto; the WebAssembly build ships in the npm package, installed
-- into build/js-clients on first use) against loom
-- (spec/03-clients/js/crypto.mjs runs each scenario):
-- * two users in a room with m.room.encryption see each other's devices
--   through /keys/query and decrypt each other's megolm messages (the keys
--   go over olm to-device messages after /keys/claim);
-- * a device logged in later is heard of through /sync's device_lists and
--   gets the next keys, and is dropped once it logs out; a new device
--   restores a key backup (/room_keys) and decrypts the history;
-- * two users verify each other with SAS; their master-key signatures
--   reach the server (/keys/signatures/upload, /keys/query);
-- * a client loading members lazily fetches them before sharing its keys;
-- * the cross-signing and backup keys kept in secret storage (account data)
--   by one device and taken from there by a second, which signs itself;
-- * cross-signing bootstrapped through password UIA, and a key backup
--   version the client trusts.
local tesths = require "support.hs"
local shell = require "support.shell"
local json = require("loom.core").json

local DIR = "build/js-clients"

local function install()
  local out = shell.lines(("mkdir -p %s && cp spec/03-clients/js/package.json spec/03-clients/js/crypto.mjs %s/ && "
    .. "cd %s && (test -d node_modules/matrix-js-sdk || npm install --no-audit --no-fund --loglevel=error) "
    .. ">/dev/null 2>&1; echo rc=$?"):format(DIR, DIR, DIR))
  return out[#out] == "rc=0"
end

local function scenario(mode)
  assert(install(), "could not install matrix-js-sdk with npm into " .. DIR)
  local t = tesths.start { server_name = "localhost" }
  local code, out, err = t:spawn("node", { DIR .. "/crypto.mjs", "http://127.0.0.1:" .. t.port, mode }, 180000)
  t:stop()
  assert.equal(0, code, "js-sdk crypto client failed:\n" .. out .. "\n" .. err)
  return assert(json.decode(out:match("([^\n]+)\n?$")))
end

describe("matrix-js-sdk's Rust crypto against loom", function()
  it("two users see each other's devices and decrypt each other's messages", function()
    local result = scenario("messages")
    assert.is_true(result.devices)
    assert.is_true(result.alice_to_bob)
    assert.is_true(result.bob_to_alice)
    assert.is_true(result.again)
    assert.is_true(result.ok)
  end)

  it("shares keys with a device logged in later, and restores a key backup on a new device", function()
    local result = scenario("late-devices")
    assert.is_true(result.new_device)
    assert.is_true(result.logged_out)
    assert.is_true(result.backup_restore)
    assert.is_true(result.ok)
  end)

  it("two users verify each other with SAS and the signatures of their master keys reach the server", function()
    local result = scenario("verification")
    assert.is_true(result.sas)
    assert.is_true(result.signatures)
    assert.is_true(result.ok)
  end)

  it("a client loading members lazily fetches them to share its keys", function()
    local result = scenario("lazy-members")
    assert.is_true(result.lazy_members)
    assert.is_true(result.ok)
  end)

  it("keeps the cross-signing and backup keys in secret storage; a second device takes them", function()
    local result = scenario("secret-storage")
    assert.is_true(result.secret_storage)
    assert.is_true(result.recovered)
    assert.is_true(result.ok)
  end)

  it("bootstraps cross-signing with password UIA and creates a trusted key backup", function()
    local result = scenario("cross-signing")
    assert.is_true(result.cross_signing)
    assert.is_true(result.key_backup)
    assert.is_true(result.ok)
  end)
end)
