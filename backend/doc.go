// Package backend is the Skiff dashboard's server: it logs users in with a
// bearer token (validated by the API server as that user), keeps
// server-side sessions behind a Secure, HttpOnly, SameSite=Strict cookie,
// proxies every read and write to the API server with the user's own
// token, and multiplexes live, server-side filtered, sorted and paginated
// views of one shared informer cache per resource kind to each browser tab
// over one websocket. It also serves the embedded front end (web/).
package backend
