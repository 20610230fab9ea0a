package server

// ServeClusterDNS serves the DNS add-on on host and publishes host as this
// server's kube-dns endpoint, as the node agent's gateway would be.
func (s *Server) ServeClusterDNS(host string) { s.serveClusterDNS(host) }
