# weightlift: `make` builds, `make test` runs every test, `make demo` loads a real checkpoint.
# Each target installs what it needs on a fresh Debian machine (tools/install-deps.sh).
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PREFIX ?= /usr/local

.PHONY: all deps build test test-c test-asan test-tsan test-python venv vllm-venv demo bench install ptx clean

all: build

deps:
	bash tools/install-deps.sh build

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWLIFT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Python virtual environment with the test dependencies (reference safetensors, numpy, torch).
venv:
	bash tools/venv.sh

# vLLM's CPU build in a venv of its own (.venv-vllm: its torch and transformers pins clash with
# .venv), for tests/python/test_client_vllm.py (docs/vllm.md); about 6 GB.
vllm-venv:
	bash tools/vllm-venv.sh

# The venv comes before the C suites: the S3 and GCS suites run the moto server and
# gcp-storage-emulator from it (they skip, 77, without it).
test:
	bash tools/install-deps.sh test
	$(MAKE) build
	$(MAKE) venv
	$(MAKE) vllm-venv
	$(MAKE) test-c
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) test-python

test-c:
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWLIFT_WERROR=ON \
	  -DWLIFT_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer build of the threaded engine tests (pipeline workers, callbacks, refcounts),
# and of the fault-injection test (real io_uring completions, late and out of order).
test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWLIFT_WERROR=ON \
	  -DWLIFT_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && WLIFT_SKIP_BIG=1 TSAN_OPTIONS=halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -R '^(unit/test_(load|plan|dlpack|uring|seams|stages|shard|cuda|gds|cache)|fault/test_fault)$$'

test-python: venv
	bash tools/test-python.sh

demo:
	bash tools/demo.sh

bench: build venv
	bash bench/local.sh

# Installs the library, header, weightlift.pc and the CLI, then the Python package into
# $(PYTHON)'s environment (PYTHON= to skip it).
PYTHON ?= python3
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)
	if [ -n "$(PYTHON)" ]; then $(PYTHON) -m pip install ./; fi

# Regenerate the device kernels' committed PTX (src/kernels/) with nvcc (tools/gen-ptx.sh).
ptx:
	sh tools/gen-ptx.sh $(or $(NVCC),$(shell command -v nvcc || echo /usr/local/cuda/bin/nvcc))

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
