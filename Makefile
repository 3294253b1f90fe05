# Thin wrappers over CMake and ctest, so that the README's two commands work on a fresh machine.
#   make chat   install dependencies, build the program, and chat with the bundled model
#   make test   install dependencies, build, and run the test suite
# Knobs: BUILD=dir  CUDA=AUTO|ON|OFF  WERROR=1  SANITIZE=1  JOBS=n  TYPE=Release|RelWithDebInfo|Debug
BUILD    ?= build
CUDA     ?= AUTO
WERROR   ?= 0
SANITIZE ?= 0
TYPE     ?= RelWithDebInfo
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
SHARED   ?= $(if $(TANDEM_SHARED),$(TANDEM_SHARED),../shared)
ON_1      = $(if $(filter 1 ON on yes,$(1)),ON,OFF)

.PHONY: all deps configure build test chat clean
all: build

deps:
	@tools/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(TYPE) -DTANDEM_CUDA=$(CUDA) \
	  -DTANDEM_WERROR=$(call ON_1,$(WERROR)) -DTANDEM_SANITIZE=$(call ON_1,$(SANITIZE))

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# tools/setup-llama.sh brings node-llama-cpp's prebuilt llama.cpp (npm) for tests/cli/test_llama_interop.sh;
# configuring again afterwards builds tools/compare against it (the test skips, saying why, without it)
# tools/setup-serve-tests.sh brings the npm clients (openai, ollama, playwright-core) the serve tests drive
test: build
	@tools/setup-llama.sh || echo "make test: no llama.cpp from npm; test_llama_interop will skip"
	@tools/setup-serve-tests.sh || echo "make test: no npm clients; the serve client, page and load tests will skip"
	cmake $(BUILD) >/dev/null && cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# A conversation with the bundled model (models/tandem-tiny-q8_0.gguf). Builds the program alone, not the
# tests; the chat takes the terminal's Ctrl-C for itself, so that leaving it ends make normally.
chat: configure
	cmake --build $(BUILD) -j $(JOBS) --target tandem_cli
	TANDEM_SHARED=$(SHARED) $(BUILD)/bin/tandem chat

clean:
	rm -rf $(BUILD)
