package esapi

import "net/http"

func (h *Handler) search(w http.ResponseWriter, r *http.Request, index string) error {
	return esError(http.StatusNotImplemented, "not_implemented", "search is not implemented yet")
}

func (h *Handler) count(w http.ResponseWriter, r *http.Request, index string) error {
	return esError(http.StatusNotImplemented, "not_implemented", "count is not implemented yet")
}
