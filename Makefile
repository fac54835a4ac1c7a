# aiohook: `make run` (examples on real storage) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian packages the suite uses: real libvirtd + QEMU, qemu-img, xfs, loop devices,
# libvirt's RelaxNG schema (libvirt0) and xmllint; debootstrap for the second stack,
# acl for the /dev/kvm ACL, cpio/xz-utils for the test guest's initramfs.
DEBS := libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils xfsprogs \
        libvirt0 libxml2-utils util-linux strace debootstrap acl cpio xz-utils
# The second stack (libvirt 11 / QEMU 10 from bookworm-backports, in a chroot) and
# the tiny test guest, built once and reused from outside the checkout.
STACK_CACHE ?= /var/cache/aiohook

.PHONY: run test venv debs stacks bench lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' ruff
	touch $@

# Installs missing Debian packages when root (CI, fresh hosts); otherwise says what is missing.
debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "not root: tests needing these will skip:" $$missing; fi

run: venv
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory debs DEBS="qemu-utils xfsprogs util-linux"; fi
	$(PY) examples/run.py

# Builds (or reuses) the chroot stack and the test guest; as root only (debootstrap, chroot).
stacks: debs
	@if [ "$$(id -u)" = 0 ]; then \
	  bash tests/stacks/build-modern.sh $(STACK_CACHE)/stack-modern && \
	  bash tests/stacks/build-guest.sh $(STACK_CACHE)/guest; \
	else echo "not root: the chroot stack and the test guest are not built; their tests skip"; fi

test: debs venv stacks
	AIOHOOK_MODERN_ROOT=$(STACK_CACHE)/stack-modern AIOHOOK_GUEST_DIR=$(STACK_CACHE)/guest \
	  $(PY) -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/plan_bench.py
	$(PY) benchmarks/hook_cost.py

lint: venv
	$(VENV)/bin/ruff check aiohook tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
