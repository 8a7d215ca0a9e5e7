# Everything a developer or CI runs. `make run` and `make test` are the README's two
# commands; `.ci/run` calls `make lint` and `make test`.

CARGO ?= cargo

.PHONY: run test contract bench bench-hot bench-moves bench-quick bench-growth fmt fmt-check lint doc check-deps clean

## Start the service on the embedded in-memory store (no setup needed).
run:
	$(CARGO) run --bin orgsvc

## Run every test: unit, doc, contract, crash-injection, architecture and black-box API
## tests, the MongoDB ones against SecantusDB test servers that this target installs,
## starts and stops by itself (the black-box API suite twice: with the organization cache,
## the default, and without it), then schemathesis against the OpenAPI document.
test:
	$(CARGO) build --workspace --all-targets
	scripts/with-test-mongo.sh $(CARGO) test --workspace --all-targets
	ORGSVC_TEST_CACHE=off scripts/with-test-mongo.sh $(CARGO) test -p api-tests --test api
	$(CARGO) test --workspace --doc
	scripts/with-test-mongo.sh scripts/api-contract.sh target/debug/orgsvc

## The service against its own OpenAPI document: schemathesis, every check, on the memory
## store and on MongoDB (also part of `make test`).
contract:
	$(CARGO) build --bin orgsvc
	scripts/with-test-mongo.sh scripts/api-contract.sh target/debug/orgsvc

## Format the code.
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

## Formatting and clippy with warnings as errors.
lint: fmt-check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## API documentation of every crate.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## The dependency rule alone (also part of `make test`).
check-deps:
	$(CARGO) test -p api-tests --test architecture

clean:
	$(CARGO) clean

## Benchmarks (release build; memory store, and MongoDB on the project's test server).
## Prints one table with the targets of docs/benchmarks.md marked met or not.
bench:
	$(CARGO) build --release -p orgsvc
	$(CARGO) build --release -p bench
	scripts/with-test-mongo.sh target/release/orgsvc-bench

## Scenarios 1, 7 and 8 alone: GET against the hello world floor, on the memory store and on
## MongoDB with the organization cache, and how soon a second instance sees changes.
bench-hot:
	$(CARGO) build --release -p orgsvc
	$(CARGO) build --release -p bench
	scripts/with-test-mongo.sh target/release/orgsvc-bench --only=hot

## Scenario 6 alone: an online tenant move of 1,000 and 100,000 documents under a writer.
bench-moves:
	$(CARGO) build --release -p bench
	scripts/with-test-mongo.sh target/release/orgsvc-bench --only=moves

## The same scenarios, smaller and shorter (under 2 minutes after the build).
bench-quick:
	$(CARGO) build --release -p orgsvc
	$(CARGO) build --release -p bench
	scripts/with-test-mongo.sh target/release/orgsvc-bench --quick

## Scenario 3 on MongoDB for every placement at the issues' sizes (1,000 and 10,000
## organizations; 1,000, 10,000 and 100,000 for `shared`), which the test server makes too
## slow for `make bench` (see docs/benchmarks.md); `shared` organizations are seeded in bulk.
## PLACEMENTS picks some of them, e.g. `make bench-growth PLACEMENTS=shared` (about 4 min).
PLACEMENTS ?= collection,database,shared
bench-growth:
	$(CARGO) build --release -p orgsvc
	$(CARGO) build --release -p bench
	scripts/with-test-mongo.sh target/release/orgsvc-bench --only=growth --mongo-sizes=1000,10000 \
		--shared-sizes=1000,10000,100000 --bulk-seed --placements=$(PLACEMENTS)
