// matrix-js-sdk 36 and the content repository (spec/03-clients/jssdk_media_spec.lua):
// uploads an image with uploadContent, builds the authenticated thumbnail and
// download URLs with mxcUrlToHttp (useAuthentication) and fetches them with its
// access token. Usage: node media.mjs BASE_URL IMAGE_PATH
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";

const base = process.argv[2];
const image = readFileSync(process.argv[3]);
const need = (cond, what) => { if (!cond) throw new Error("js-sdk media scenario failed: " + what); };
const quiet = { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {}, getChild() { return quiet; } };

async function register(username) {
  const c = sdk.createClient({ baseUrl: base, logger: quiet });
  let res;
  try {
    res = await c.registerRequest({ username, password: username + "-password" });
  } catch (e) {
    need(e.httpStatus === 401 && e.data && e.data.session, "register: expected 401 with a session, got " + e);
    res = await c.registerRequest({ username, password: username + "-password",
      auth: { type: "m.login.dummy", session: e.data.session } });
  }
  need(res.access_token && res.user_id, "register " + username);
  return sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
    deviceId: res.device_id, logger: quiet });
}

async function main() {
  const out = {};
  const dana = await register("jsdana");
  const up = await dana.uploadContent(image, { type: "image/png", name: "photo.png" });
  need(up.content_uri && up.content_uri.startsWith("mxc://"), "upload: " + JSON.stringify(up));
  out.content_uri = up.content_uri;
  const auth = { Authorization: "Bearer " + dana.getAccessToken() };

  const thumbUrl = dana.mxcUrlToHttp(up.content_uri, 96, 96, "crop", false, true, true);
  need(thumbUrl && thumbUrl.includes("/_matrix/client/v1/media/thumbnail/"), "thumbnail URL " + thumbUrl);
  const unauth = await fetch(thumbUrl);
  out.thumbnail_without_token = unauth.status;
  const t = await fetch(thumbUrl, { headers: auth });
  need(t.status === 200, "thumbnail status " + t.status);
  const tbody = Buffer.from(await t.arrayBuffer());
  out.thumbnail_type = t.headers.get("content-type");
  out.thumbnail_bytes = tbody.length;
  out.thumbnail_sha256 = createHash("sha256").update(tbody).digest("hex");
  out.thumbnail_corp = t.headers.get("cross-origin-resource-policy");

  const dlUrl = dana.mxcUrlToHttp(up.content_uri, undefined, undefined, undefined, false, true, true);
  need(dlUrl && dlUrl.includes("/_matrix/client/v1/media/download/"), "download URL " + dlUrl);
  const d = await fetch(dlUrl, { headers: auth });
  need(d.status === 200, "download status " + d.status);
  const dbody = Buffer.from(await d.arrayBuffer());
  need(dbody.equals(image), "downloaded bytes differ from the upload");
  out.download_disposition = d.headers.get("content-disposition");

  const config = await fetch(base + "/_matrix/client/v1/media/config", { headers: auth });
  out.upload_size = (await config.json())["m.upload.size"];
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack || String(e)); process.exit(1); });
