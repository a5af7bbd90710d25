# What every makefile-built Python layer shares (SAM's `BuildMethod: makefile`):
# install the pinned requirements as the target's binary wheels, strip what is never
# imported at run time, precompile bytecode. Each layer's Makefile sets LAYER_DIR and,
# if it needs them, STRIP_DIRS / STRIP_FILES (paths under python/), includes this file
# and names its target: `build-<LogicalId>: layer`.
#
# Each layer folder holds a symlink python-layer.mk -> ../python-layer.mk and includes
# that: SAM's cached builds (samconfig.toml: cached = true) hash the layer's folder,
# following links, so a change here rebuilds every layer.
#
# SAM runs `make --makefile <layer>/Makefile build-<LogicalId>` in a copy of the layer
# folder, with ARTIFACTS_DIR added to its own environment and nothing else: the
# template's Architecture / BuildArchitecture is NOT passed to make. Choose the
# architecture with LAMBDA_ARCHITECTURE (x86_64 by default) and keep it in step with
# the template parameter:
#   LAMBDA_ARCHITECTURE=arm64 sam build --parameter-overrides Architecture=arm64
#
# The build host need not match the target: pip fetches the target's binary wheels
# (Lambda python3.12 runs on Amazon Linux 2023, glibc 2.34; the newest onnxruntime
# wheels need manylinux_2_28, so that is the newest tag accepted).

ifndef LAYER_DIR
$(error set LAYER_DIR (the folder of the layer's Makefile) before including python-layer.mk)
endif

LAMBDA_ARCHITECTURE ?= x86_64
PIP ?= python3 -m pip
REQUIREMENTS ?= $(LAYER_DIR)requirements.txt

# A python3.12 on the build host, if any, compiles the layer's bytecode (see
# compile-bytecode). pyenv's python3.12 shim exists even when 3.12 is not active,
# so candidates are run, not just looked up.
BYTECODE_PYTHON ?= $(shell for py in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { command -v "$$py"; break; }; \
	done)

ifeq ($(LAMBDA_ARCHITECTURE),x86_64)
WHEEL_ARCH := x86_64
else ifeq ($(LAMBDA_ARCHITECTURE),arm64)
WHEEL_ARCH := aarch64
else
$(error LAMBDA_ARCHITECTURE must be x86_64 or arm64, not '$(LAMBDA_ARCHITECTURE)')
endif

# pip does not expand manylinux_2_28 to the older manylinux tags it implies, and
# some wheels (pydantic-core) are only tagged manylinux_2_17 / manylinux2014.
MANYLINUX_GLIBC_MINORS := 28 27 26 25 24 23 22 21 20 19 18 17
PLATFORM_FLAGS := $(foreach minor,$(MANYLINUX_GLIBC_MINORS),--platform manylinux_2_$(minor)_$(WHEEL_ARCH)) \
	--platform manylinux2014_$(WHEEL_ARCH)

SITE_PACKAGES = $(ARTIFACTS_DIR)/python

# numpy's build tooling (f2py, imported lazily by nothing at run time) and PyInstaller hooks,
# for the layers that hold numpy.
NUMPY_UNUSED := numpy/f2py numpy/_pyinstaller

.PHONY: layer install-wheels strip-unused compile-bytecode

layer: install-wheels strip-unused compile-bytecode

# --no-deps: requirements.txt is the complete pinned closure (tests/unit/test_function_layers.py).
# --no-compile: pip would write bytecode for the build host's Python.
install-wheels:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run this via sam build)" >&2; exit 1; }
	rm -rf "$(SITE_PACKAGES)"
	$(PIP) install --disable-pip-version-check --root-user-action=ignore --no-compile --no-deps \
		$(PLATFORM_FLAGS) --implementation cp --python-version 3.12 --only-binary=:all: \
		--target "$(SITE_PACKAGES)" -r "$(REQUIREMENTS)"

# Every layer: bin/ (console scripts for the build host, never on Lambda's PATH), tests,
# __pycache__ of the build host, *.pyi type stubs (read by type checkers, never by the
# interpreter); then the layer's own STRIP_DIRS and STRIP_FILES.
# dist-info directories stay: pydantic reads package metadata at run time.
strip-unused: install-wheels
	rm -rf "$(SITE_PACKAGES)/bin" $(foreach path,$(STRIP_DIRS),"$(SITE_PACKAGES)/$(path)")
	$(if $(STRIP_FILES),rm -f $(foreach path,$(STRIP_FILES),"$(SITE_PACKAGES)"/$(path)))
	find "$(SITE_PACKAGES)" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
	find "$(SITE_PACKAGES)" -type f -name '*.pyi' -delete

# Lambda's /opt is read-only, so without shipped bytecode every cold start compiles
# the layer's sources again (measured: importing numpy, onnxruntime, Pillow,
# pydantic and the Powertools event handler takes ~1.1 s without, ~0.5 s with).
# unchecked-hash: zip archives round mtimes to 2 s, which would make
# timestamp-checked .pyc files look stale.
compile-bytecode: strip-unused
ifeq ($(BYTECODE_PYTHON),)
	@echo "WARNING: no python3.12 on this host: the layer ships without bytecode (slower cold starts)" >&2
else
	$(BYTECODE_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
		|| { echo "BYTECODE_PYTHON=$(BYTECODE_PYTHON) is not a python3.12" >&2; exit 1; }
	$(BYTECODE_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(SITE_PACKAGES)"
endif
