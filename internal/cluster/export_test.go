package cluster

// MaxCertificateNames is how many names an announcement keeps.
const MaxCertificateNames = maxCertificateNames
