package httpapi_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/translog"
	"github.com/licenseledger/ledger/internal/webhooks"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/asof"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/chain"
	"github.com/licenseledger/ledger/projections/seats"
)

// answerTypes are the Go types the API answers with, by the name of their
// schema in openapi.json.
var answerTypes = map[string]any{
	"Problem":          httpapi.Problem{},
	"Usage":            seats.Usage{},
	"User":             seats.User{},
	"UserList":         httpapi.UserList{},
	"ActivityCreated":  httpapi.ActivityCreated{},
	"Activity":         attribution.Activity{},
	"ActivityPage":     httpapi.ActivityList{},
	"AuditEntry":       audit.Entry{},
	"AuditList":        httpapi.AuditList{},
	"ChainReport":      chain.Report{},
	"ChainBreak":       chain.Break{},
	"ChainSkipped":     chain.Skipped{},
	"Verification":     httpapi.Verification{},
	"AsOfState":        asof.State{},
	"BillingCycle":     billing.Cycle{},
	"BillingPurchase":  billing.Purchase{},
	"BillingReduction": billing.Reduction{},
	"BillingTotals":    billing.Totals{},
	"BillingList":      httpapi.BillingList{},
	"StoredEvent":      httpapi.StoredEvent{},
	"TokenCreated":     httpapi.TokenCreated{},
	"TokenInfo":        httpapi.TokenInfo{},
	"Quarantined":      projections.Quarantined{},
	"QuarantineList":   httpapi.QuarantineList{},
	"Proof":            httpapi.Proof{},
	"BundleLine":       translog.BundleLine{},
	"AccountSummary":   seats.Summary{},
	"AccountList":      httpapi.AccountList{},
	"Webhook":          webhooks.Endpoint{},
	"WebhookCreated":   httpapi.RegisteredWebhook{},
	"WebhookList":      httpapi.WebhookList{},
	"WebhookDelivery":  webhooks.Delivery{},
	"DeliveryList":     httpapi.DeliveryList{},
}

type schema struct {
	Type       any                `json:"type"`
	Properties map[string]*schema `json:"properties"`
	Required   []string           `json:"required"`
	Ref        string             `json:"$ref"`
	Format     string             `json:"format"`
}

// nullable reports whether a property's schema admits null.
func (s *schema) nullable() bool {
	switch t := s.Type.(type) {
	case string:
		return t == "null"
	case []any:
		for _, x := range t {
			if x == "null" {
				return true
			}
		}
	}
	return false
}

// goMembers returns the JSON members a Go struct marshals to: whether
// each is always present (no omitempty or omitzero), whether it can be
// null (a pointer, interface or map that is nil), and whether it is a
// float64.
func goMembers(t reflect.Type) map[string][3]bool {
	out := map[string][3]bool{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			for k, v := range goMembers(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		omit := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		k := f.Type.Kind()
		out[name] = [3]bool{!omit, !omit && (k == reflect.Pointer || k == reflect.Interface), k == reflect.Float64}
	}
	return out
}

// TestOpenAPISchemasMatchGo checks every answer's schema against the Go
// type that is marshalled for it: the same members, required exactly
// when the member is always present, null allowed exactly when an
// always present member can be nil, and floats as doubles. (Slices and maps are never null: the
// API marshals them as [] and {}.)
func TestOpenAPISchemasMatchGo(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]*schema `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range answerTypes {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s missing", name)
			continue
		}
		members := goMembers(reflect.TypeOf(v))
		var goNames, docNames, goRequired []string
		for k, m := range members {
			goNames = append(goNames, k)
			if m[0] {
				goRequired = append(goRequired, k)
			}
			if p := s.Properties[k]; p != nil && p.Ref == "" && p.nullable() != m[1] {
				t.Errorf("%s.%s: null allowed %v, Go can be null %v", name, k, p.nullable(), m[1])
			}
			// A float64 is a double: without the format, generators
			// (oapi-codegen among them) make it a float32.
			if p := s.Properties[k]; p != nil && m[2] && (p.Type != "number" || p.Format != "double") {
				t.Errorf("%s.%s: type %v format %q for a float64, want number and double", name, k, p.Type, p.Format)
			}
		}
		for k := range s.Properties {
			docNames = append(docNames, k)
		}
		required := slices.Clone(s.Required)
		slices.Sort(goNames)
		slices.Sort(docNames)
		slices.Sort(goRequired)
		slices.Sort(required)
		if !slices.Equal(goNames, docNames) {
			t.Errorf("%s: members %v, Go %v", name, docNames, goNames)
		}
		if !slices.Equal(goRequired, required) {
			t.Errorf("%s: required %v, Go always writes %v", name, required, goRequired)
		}
	}
}

// TestOpenAPIOperations: every operation has a unique operationId, at
// least one tag that the document declares, and a summary.
func TestOpenAPIOperations(t *testing.T) {
	var doc struct {
		Tags []struct {
			Name string `json:"name"`
		} `json:"tags"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, tag := range doc.Tags {
		declared[tag.Name] = true
	}
	ids := map[string]string{}
	n := 0
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			if method == "parameters" {
				continue
			}
			n++
			var op struct {
				OperationID string   `json:"operationId"`
				Tags        []string `json:"tags"`
				Summary     string   `json:"summary"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			where := strings.ToUpper(method) + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s: operationId %s also names %s", where, op.OperationID, other)
			}
			ids[op.OperationID] = where
			if len(op.Tags) == 0 || op.Summary == "" {
				t.Errorf("%s: tags %v, summary %q", where, op.Tags, op.Summary)
			}
			for _, tag := range op.Tags {
				if !declared[tag] {
					t.Errorf("%s: tag %q not declared", where, tag)
				}
			}
		}
	}
	if n < 30 {
		t.Fatalf("control: only %d operations", n)
	}
}
