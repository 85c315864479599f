package api_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// jsonFields returns the JSON names of t's fields, embedded structs
// flattened as encoding/json does.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			names = append(names, jsonFields(f.Type)...)
		case name != "":
			names = append(names, name)
		case f.IsExported():
			names = append(names, f.Name)
		}
	}
	return names
}

type schema struct {
	Properties map[string]json.RawMessage `json:"properties"`
	AllOf      []struct {
		Ref string `json:"$ref"`
		schema
	} `json:"allOf"`
}

// schemaFields returns the property names of a component schema, allOf
// parts included.
func schemaFields(t *testing.T, all map[string]json.RawMessage, name string) []string {
	t.Helper()
	var s schema
	if err := json.Unmarshal(all[name], &s); err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	var names []string
	for p := range s.Properties {
		names = append(names, p)
	}
	for _, part := range s.AllOf {
		if ref, ok := strings.CutPrefix(part.Ref, "#/components/schemas/"); ok {
			names = append(names, schemaFields(t, all, ref)...)
		}
		for p := range part.Properties {
			names = append(names, p)
		}
	}
	return names
}

// TestOpenAPISchemasMatchTypes: each schema has exactly the JSON fields of
// the Go type the API encodes or decodes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for name, typ := range map[string]reflect.Type{
		"Problem":            reflect.TypeFor[api.Problem](),
		"Check":              reflect.TypeFor[api.Check](),
		"Health":             reflect.TypeFor[api.Health](),
		"RevRef":             reflect.TypeFor[api.RevRef](),
		"Revision":           reflect.TypeFor[mirror.Revision](),
		"RevisionStatus":     reflect.TypeFor[api.RevisionStatus](),
		"Maintenance":        reflect.TypeFor[api.Maintenance](),
		"MaintenanceStatus":  reflect.TypeFor[api.MaintenanceStatus](),
		"MaintenanceRequest": reflect.TypeFor[api.MaintenanceRequest](),
		"Transfer":           reflect.TypeFor[api.Transfer](),
		"SyncProgress":       reflect.TypeFor[mirror.SyncProgress](),
		"SourceCount":        reflect.TypeFor[mirror.SourceCount](),
		"PeerUpload":         reflect.TypeFor[api.PeerUpload](),
		"PublishProgress":    reflect.TypeFor[mirror.PublishProgress](),
		"Status":             reflect.TypeFor[api.Status](),
		"Member":             reflect.TypeFor[api.Member](),
		"MemberList":         reflect.TypeFor[api.MemberList](),
		"ForgetResponse":     reflect.TypeFor[api.ForgetResponse](),
		"RevisionItem":       reflect.TypeFor[api.RevisionItem](),
		"RevisionList":       reflect.TypeFor[api.RevisionList](),
		"PublishRequest":     reflect.TypeFor[api.PublishRequest](),
		"PublishResponse":    reflect.TypeFor[api.PublishResponse](),
		"RollbackRequest":    reflect.TypeFor[api.RollbackRequest](),
		"RollbackResponse":   reflect.TypeFor[api.RollbackResponse](),
		"DeployRequest":      reflect.TypeFor[api.DeployRequest](),
		"DeployStep":         reflect.TypeFor[api.DeployStep](),
		"Deploy":             reflect.TypeFor[api.Deploy](),
		"CertificateState":   reflect.TypeFor[certs.State](),
		"DumpRecord":         reflect.TypeFor[dump.Record](),
		"DumpListing":        reflect.TypeFor[dump.Listing](),
		"RestoreRequest":     reflect.TypeFor[api.RestoreRequest](),
		"Restore":            reflect.TypeFor[api.Restore](),
		"DBStatus":           reflect.TypeFor[api.DBStatus](),
		"GossipStatus":       reflect.TypeFor[api.GossipStatus](),
		"ControllerStatus":   reflect.TypeFor[api.ControllerStatus](),
		"MissingMember":      reflect.TypeFor[api.MissingMember](),
		"Difference":         reflect.TypeFor[mirror.Difference](),
		"AuditStatus":        reflect.TypeFor[mirror.AuditStatus](),
		"VerifyRequest":      reflect.TypeFor[api.VerifyRequest](),
		"VerifyReport":       reflect.TypeFor[mirror.VerifyReport](),
		"KeyRequest":         reflect.TypeFor[api.KeyRequest](),
		"PrimaryRequest":     reflect.TypeFor[api.PrimaryRequest](),
		"KeyInfo":            reflect.TypeFor[gossip.KeyInfo](),
		"ClusterCertificate": reflect.TypeFor[api.ClusterCertificate](),
		"NodeKeyring":        reflect.TypeFor[api.NodeKeyring](),
		"KeyUsage":           reflect.TypeFor[api.KeyUsage](),
		"KeyringReport":      reflect.TypeFor[api.KeyringReport](),
		"UISession":          reflect.TypeFor[api.UISession](),
		"NodeReport":         reflect.TypeFor[api.NodeReport](),
		"NodeReports":        reflect.TypeFor[api.NodeReports](),
		"DeployList":         reflect.TypeFor[api.DeployList](),
		"History":            reflect.TypeFor[api.History](),
		"LagSample":          reflect.TypeFor[api.LagSample](),
		"SyncRecord":         reflect.TypeFor[api.SyncRecord](),
		"TargetChange":       reflect.TypeFor[api.TargetChange](),
	} {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("openapi.json has no schema %s", name)
			continue
		}
		want, got := jsonFields(typ), schemaFields(t, doc.Components.Schemas, name)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			t.Errorf("schema %s: properties %v, but %s encodes %v", name, got, typ, want)
		}
	}
}
