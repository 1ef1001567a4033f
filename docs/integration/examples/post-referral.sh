#!/usr/bin/env bash
# Sign (RFC 9421, Ed25519) and post a referral to intake with curl and openssl only.
#
#   post-referral.sh URL CLIENT_ID KEY_FILE REFERRAL.json
#   e.g. post-referral.sh http://127.0.0.1:8080 dev-mash var/keys/dev-mash.ed25519 examples/referral.json
#
# KEY_FILE is the client's key as `safeguard keys init` writes it: base64 of the 32-byte Ed25519
# seed on one line. Prints intake's reply and the HTTP status; exits 0 on 202.
# SIG_CREATED and SIG_NONCE fix `created` and `nonce`, and DRY_RUN=1 prints the headers and the
# signature base instead of posting: with the test vector's key and values the output is the
# vector's, byte for byte (docs/integration/vectors/http-signature.json).
# Needs bash, openssl 3 (Ed25519 with `pkeyutl -rawin`), base64 (coreutils) and curl.
set -euo pipefail
url=${1:?URL} client_id=${2:?CLIENT_ID} key_file=${3:?KEY_FILE} body_file=${4:?REFERRAL.json}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The seed as an Ed25519 PKCS#8 private key: a fixed 16-byte DER prefix, then the 32 bytes.
{ printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'; base64 -d < "$key_file"; } \
    > "$work/key.der"
openssl pkey -inform DER -in "$work/key.der" -out "$work/key.pem"

# 2. @authority: the host[:port] of the URL, as curl sends it in Host (lower case, no default port).
authority=${url#*://}; authority=${authority%%/*}; authority=${authority,,}
case "$url" in http://*:80|http://*:80/*) authority=${authority%:80};; https://*:443|https://*:443/*) authority=${authority%:443};; esac
path=/v1/referrals

# 3. Content-Digest (RFC 9530): sha-256 of the exact body bytes, as a structured-field byte sequence.
digest="sha-256=:$(openssl dgst -sha256 -binary < "$body_file" | base64 -w0):"

# 4. The signature parameters and the signature base (lines joined by \n, no final newline).
created=${SIG_CREATED:-$(date +%s)}
nonce=${SIG_NONCE:-$(openssl rand -hex 16)}
params="(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=$created;keyid=\"$client_id\";alg=\"ed25519\";nonce=\"$nonce\""
printf '"@method": POST\n"@authority": %s\n"@path": %s\n"content-digest": %s\n"@signature-params": %s' \
    "$authority" "$path" "$digest" "$params" > "$work/base"

# 5. Ed25519 over the base (deterministic), base64 in a structured-field byte sequence.
signature=$(openssl pkeyutl -sign -inkey "$work/key.pem" -rawin -in "$work/base" | base64 -w0)

if [ "${DRY_RUN:-}" = 1 ]; then
    printf 'Content-Digest: %s\nSignature-Input: sig1=%s\nSignature: sig1=:%s:\n\n' "$digest" "$params" "$signature"
    cat "$work/base"; echo
    exit 0
fi

# 6. Post it: the same body bytes, the three headers, and an Idempotency-Key for safe retries.
status=$(curl -sS -o "$work/reply" -w '%{http_code}' -X POST "${url%/}$path" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $(openssl rand -hex 16)" \
    -H "Content-Digest: $digest" -H "Signature-Input: sig1=$params" -H "Signature: sig1=:$signature:" \
    --data-binary "@$body_file")
cat "$work/reply"; echo
echo "HTTP $status"
[ "$status" = 202 ]
