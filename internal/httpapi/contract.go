package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/licenseledger/ledger/internal/contract"
)

// contractRoutes serve the published event contract, without a token like
// /openapi.json: the AsyncAPI document and the JSON Schema of every
// published event type, at the URL its events' dataschema names.
func (s *server) contractRoutes() {
	s.handle("GET /asyncapi.json", func(w http.ResponseWriter, r *http.Request) {
		doc, err := contract.AsyncAPI()
		if err != nil {
			s.send(w, r, s.problemResponse(r, err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		w.Write(doc)
	})
	s.handle("GET /schemas/{name}", func(w http.ResponseWriter, r *http.Request) {
		typ, ok := strings.CutSuffix(r.PathValue("name"), ".json")
		doc, found := contract.SchemaJSON(typ)
		if !ok || !found {
			s.send(w, r, s.problemResponse(r, newProblem(ProblemNotFound, http.StatusNotFound, "no schema of that name: see /asyncapi.json for the published types")))
			return
		}
		w.Header().Set("Content-Type", "application/schema+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		w.Write(doc)
	})
}
