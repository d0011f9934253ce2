# The test target installs what the tests need when it is missing
# (Debian's mosquitto, printcore, nats-server, prometheus and
# openssh-client packages),
# then runs every test with the race detector.

GO ?= go
APT_PACKAGES := mosquitto printcore prometheus openssh-client
FUZZTIME ?= 20000x
FUZZMINIMIZETIME ?= 50x

.PHONY: test test-deps build build-lean fuzz-short vet faults

test: test-deps
	$(GO) vet ./...
	$(GO) vet -tags noembeddedbroker ./...
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz-short

test-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v printcore >/dev/null 2>&1 || missing="$$missing printcore"; \
	command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
		echo "installing test dependencies:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build:
	$(GO) build -o bin/printbridge ./cmd/printbridge

# A binary without the embedded nats-server, which only the demo needs,
# and stripped: 14.0 MB against 34.4 MB from build (Go 1.26,
# linux/amd64), 10.0 MB of it the server, and about 3 MiB less resident
# memory per edge or worker process (docs/benchmarks.md).
build-lean:
	CGO_ENABLED=0 $(GO) build -tags noembeddedbroker -trimpath -ldflags="-s -w" -o bin/printbridge ./cmd/printbridge

vet:
	$(GO) vet ./...

# A short run of every fuzz target, so they cannot rot. FUZZTIME is a
# count of executions: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as "context deadline exceeded" and fail a
# target that found nothing (golang/go#75804, fixed in Go 1.27).
# FUZZMINIMIZETIME bounds the minimization of each new input, which by
# default runs for up to a minute: FuzzFirmwareInput stood still for
# minutes in it, because its inputs may each wait out a 200 ms deadline.
fuzz-short:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg || exit 1; \
		done; \
	done

# The full fault suite (docs/delivery.md): real mosquitto, nats-server,
# edge, worker and virtual printer processes, with 20 broker restarts, 5
# worker and 3 edge kills and one unplug during real prints. `make test`
# runs a small version of it.
faults: test-deps
	@command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { \
		echo "installing test dependency: nats-server"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server; \
	}
	FAULT_SCALE=full $(GO) test -race -count=1 -timeout 60m -v -run '^(TestFaultSuite|TestEdgeBroker)' ./cmd/printbridge/

# Every benchmark of package bench (a few minutes on two cores), with the
# tables written into docs/benchmarks.md. Nothing here fails on a slow
# number: the tables say which targets were met.
.PHONY: bench
bench: test-deps
	$(GO) run ./bench/cmd/pbbench -out docs/benchmarks.md -v
