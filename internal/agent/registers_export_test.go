package agent

// Hooks for the fuzz targets of the register values (registers_fuzz_test.go).
var (
	DecodeMaintenance = decodeMaintenance
	EdgeMaintenance   = edgeMaintenance
	DecodeCertificate = decodeCertificate
)
