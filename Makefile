# The test target installs what the tests need when it is missing
# (Debian's mosquitto and printcore packages), then runs every test with
# the race detector.

GO ?= go
APT_PACKAGES := mosquitto printcore
FUZZTIME ?= 10s

.PHONY: test test-deps build fuzz-short vet

test: test-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz-short

test-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v printcore >/dev/null 2>&1 || missing="$$missing printcore"; \
	if [ -n "$$missing" ]; then \
		echo "installing test dependencies:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build:
	$(GO) build -o bin/printbridge ./cmd/printbridge

vet:
	$(GO) vet ./...

# A short run of every fuzz target, so they cannot rot.
fuzz-short:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done
