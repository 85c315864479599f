# make deb: dist/nodeagent_<version>_<arch>.deb (nfpm, pinned as a go tool).
# GOARCH=arm64 make deb cross-builds.

GO      ?= go
GOARCH  ?= $(shell $(GO) env GOARCH)
VERSION ?= $(shell packaging/version.sh)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD)
# Evaluated once (a ?= variable would run its command at every use).
GOARCH  := $(GOARCH)
VERSION := $(VERSION)
COMMIT  := $(COMMIT)
DEB_ARCH = $(or $(deb_arch_$(GOARCH)),$(GOARCH))
deb_arch_386 = i386
deb_arch_arm = armhf
DEB      = dist/nodeagent_$(VERSION)_$(DEB_ARCH).deb
LDFLAGS  = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build deb test-deb clean
.DELETE_ON_ERROR:

build: dist/nodeagent

# Always rebuilt: go decides what is stale, and the version may change.
dist/nodeagent: FORCE
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/nodeagent

# nfpm runs on this machine: without the GOARCH/GOOS given to make for the binary.
deb: dist/nodeagent
	rm -f dist/nodeagent_*_$(DEB_ARCH).deb
	env -u GOARCH -u GOOS VERSION=$(VERSION) DEB_ARCH=$(DEB_ARCH) $(GO) tool nfpm package --config packaging/nfpm.yaml --packager deb --target $(DEB)
	@echo $(DEB)

# Build, install, inspect and remove the package on this machine (root).
test-deb: deb
	packaging/test-deb.sh $(DEB)

clean:
	rm -rf dist

.PHONY: FORCE
FORCE:
