"""The web package the services' pages share (DESIGN §3.7): sign-in with OpenID Connect,
server-side sessions, CSRF tokens, security headers, the GOV.UK layout and the locally
served front-end assets (GOV.UK Frontend, MOJ Frontend, libsodium-wrappers)."""
