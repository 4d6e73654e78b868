"""matrix-nio uploads and downloads files against a loom server
(spec/03-clients/nio_media_spec.lua).

Usage: /usr/bin/python3 nio_media.py BASE_URL IMAGE_PATH
Prints one JSON object with what it saw; exits 1 with a message on the first
thing that goes wrong.
"""
import asyncio
import hashlib
import json
import sys

import nio


def need(cond, what):
    if not cond:
        raise SystemExit("nio media scenario failed: " + what)


async def main(base, image_path):
    out = {}
    alice = nio.AsyncClient(base, "carol")
    r = await alice.register("carol", "carol-password", "nio-carol")
    need(isinstance(r, nio.RegisterResponse), "register: %r" % (r,))

    data = bytes(range(256)) * 4000   # ~1 MB of every byte value
    r, _ = await alice.upload(lambda *_: data, content_type="application/pdf",
                              filename="report \u00e9t\u00e9.pdf", filesize=len(data))
    need(isinstance(r, nio.UploadResponse), "upload: %r" % (r,))
    out["content_uri"] = r.content_uri
    d = await alice.download(r.content_uri)
    need(isinstance(d, nio.DownloadResponse), "download: %r" % (d,))
    need(d.body == data, "downloaded bytes differ")
    out["download_type"] = d.content_type
    out["download_filename"] = d.filename

    with open(image_path, "rb") as f:
        img = f.read()
    r, _ = await alice.upload(lambda *_: img, content_type="image/png", filename="pic.png",
                              filesize=len(img))
    need(isinstance(r, nio.UploadResponse), "upload image: %r" % (r,))
    server, media_id = r.content_uri[len("mxc://"):].split("/", 1)
    t = await alice.thumbnail(server, media_id, 96, 96, nio.ResizingMethod.crop)
    need(isinstance(t, nio.ThumbnailResponse), "thumbnail: %r" % (t,))
    out["thumbnail_type"] = t.content_type
    out["thumbnail_sha256"] = hashlib.sha256(t.body).hexdigest()
    out["thumbnail_bytes"] = len(t.body)

    d = await alice.download("mxc://%s/nosuchmedia" % server)
    need(isinstance(d, nio.DownloadError), "unknown media: %r" % (d,))
    out["unknown_status"] = d.status_code
    await alice.close()
    out["ok"] = True
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2]))
