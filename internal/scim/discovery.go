package scim

import "net/http"

// The discovery endpoints (RFC 7644 section 4) describe what this service
// provider supports; RFC 7643 sections 5 to 7 define their resources.

func (h *Handler) serviceProviderConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://licenseledger.dev/docs/scim",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "A token of role provisioning, scoped to one account, minted by the ledger's support staff (POST /v1/tokens).",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": baseURL(r) + "/ServiceProviderConfig"},
	})
}

func userResourceType(r *http.Request) map[string]any {
	return map[string]any{
		"schemas":          []string{SchemaResourceType},
		"id":               "User",
		"name":             "User",
		"endpoint":         "/Users",
		"description":      "A user of the account: holds a seat while active.",
		"schema":           SchemaUser,
		"schemaExtensions": []any{},
		"meta":             map[string]any{"resourceType": "ResourceType", "location": baseURL(r) + "/ResourceTypes/User"},
	}
}

func (h *Handler) resourceTypes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, listResponse{Schemas: []string{SchemaListResponse}, TotalResults: 1, StartIndex: 1, ItemsPerPage: 1,
		Resources: []any{userResourceType(r)}})
}

func (h *Handler) resourceType(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != "User" {
		h.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "the only resource type is User"})
		return
	}
	writeJSON(w, http.StatusOK, userResourceType(r))
}

func attribute(name, typ, mutability, returned, uniqueness string, required, caseExact, multi bool, subs ...map[string]any) map[string]any {
	a := map[string]any{
		"name": name, "type": typ, "multiValued": multi, "required": required, "caseExact": caseExact,
		"mutability": mutability, "returned": returned, "uniqueness": uniqueness, "description": "",
	}
	if len(subs) > 0 {
		a["subAttributes"] = subs
	}
	return a
}

func userSchema(r *http.Request) map[string]any {
	str := func(name string) map[string]any {
		return attribute(name, "string", "readWrite", "default", "none", false, false, false)
	}
	attrs := []any{
		attribute("id", "string", "readOnly", "always", "server", false, true, false),
		attribute("userName", "string", "readWrite", "default", "server", true, false, false),
		attribute("name", "complex", "readWrite", "default", "none", true, false, false,
			str("formatted"), str("givenName"), str("familyName")),
		str("displayName"),
		attribute("emails", "complex", "readWrite", "default", "none", false, false, true,
			str("value"), str("type"), attribute("primary", "boolean", "readWrite", "default", "none", false, false, false)),
		attribute("active", "boolean", "readWrite", "default", "none", false, false, false),
		attribute("roles", "complex", "readWrite", "default", "none", false, false, true,
			attribute("value", "string", "readWrite", "default", "none", false, false, false),
			attribute("primary", "boolean", "readWrite", "default", "none", false, false, false)),
	}
	attrs[0].(map[string]any)["description"] = "The ledger's user id."
	attrs[1].(map[string]any)["description"] = "The user's email; unique among the account's users not deleted."
	attrs[2].(map[string]any)["description"] = "The ledger keeps one name: formatted, or givenName and familyName joined."
	attrs[4].(map[string]any)["description"] = "The user's email, the same as userName; one, primary."
	attrs[5].(map[string]any)["description"] = "Active users hold a seat; false deactivates the user and frees it."
	attrs[6].(map[string]any)["description"] = "One primary role: admin or member."
	return map[string]any{
		"schemas":     []string{SchemaSchema},
		"id":          SchemaUser,
		"name":        "User",
		"description": "A user of the account",
		"attributes":  attrs,
		"meta":        map[string]any{"resourceType": "Schema", "location": baseURL(r) + "/Schemas/" + SchemaUser},
	}
}

func (h *Handler) schemas(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, listResponse{Schemas: []string{SchemaListResponse}, TotalResults: 1, StartIndex: 1, ItemsPerPage: 1,
		Resources: []any{userSchema(r)}})
}

func (h *Handler) schema(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != SchemaUser {
		h.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "the only schema is " + SchemaUser})
		return
	}
	writeJSON(w, http.StatusOK, userSchema(r))
}
