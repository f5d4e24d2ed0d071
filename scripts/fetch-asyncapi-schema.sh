#!/usr/bin/env bash
# Fetch the official AsyncAPI 2.6.0 JSON Schema (npm package @asyncapi/specs, pinned) into
# .cache/asyncapi/2.6.0.json. The spec tests validate specs/*.asyncapi.yaml against it.
# Idempotent: does nothing when the file is already there with the recorded sha256.
# Needs npm (Node) and access to the npm registry the first time only.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=6.11.1
TARBALL_SHA256=01af8744dc33c0c7eb2e908f6a955319ee58b70ecadc9387d1aeb16c0cd28928
SCHEMA_SHA256=4b0bfe579e3c98a1da14db72bbd22a446ae23d5ae347ec7873a4cb488e446583
DEST=.cache/asyncapi/2.6.0.json

sha256() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" && "$(sha256 "$DEST")" == "$SCHEMA_SHA256" ]]; then
    exit 0
fi
command -v npm >/dev/null || { echo "fetch-asyncapi-schema: npm is required (install Node.js)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@asyncapi/specs@$VERSION" >/dev/null)
tarball="$tmp/asyncapi-specs-$VERSION.tgz"
if [[ "$(sha256 "$tarball")" != "$TARBALL_SHA256" ]]; then
    echo "fetch-asyncapi-schema: sha256 mismatch for @asyncapi/specs@$VERSION tarball" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/schemas/2.6.0.json
if [[ "$(sha256 "$tmp/package/schemas/2.6.0.json")" != "$SCHEMA_SHA256" ]]; then
    echo "fetch-asyncapi-schema: sha256 mismatch for schemas/2.6.0.json" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
mv "$tmp/package/schemas/2.6.0.json" "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
echo "fetch-asyncapi-schema: @asyncapi/specs@$VERSION schemas/2.6.0.json -> $DEST"
