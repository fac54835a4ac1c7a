# aiohook: `make run` (examples on real storage) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make deb`: Debian's packaging tools and the build dependencies of debian/control.
DEB_BUILD_DEBS := dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all \
        python3-setuptools python3-lxml python3-yaml python3-jsonschema python3-xmlschema
# The fleet tests: lintian (and man-db, for its man page checks) for the .deb.
FLEET_DEBS := lintian man-db
# Debian packages the suite uses: real libvirtd + QEMU, qemu-img, xfs, loop devices,
# libvirt's RelaxNG schema (libvirt0) and xmllint; debootstrap for the second stack,
# acl for the /dev/kvm ACL, cpio/xz-utils for the test guest's initramfs.
DEBS := libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils xfsprogs \
        libvirt0 libxml2-utils util-linux strace debootstrap acl cpio xz-utils \
        $(DEB_BUILD_DEBS) $(FLEET_DEBS)
# The second stack (libvirt 11 / QEMU 10 from bookworm-backports, in a chroot) and
# the tiny test guest, built once and reused from outside the checkout.
STACK_CACHE ?= /var/cache/aiohook

.PHONY: run test venv debs stacks bench lint clean deb promtool

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

# The Debian package, built from this checkout (tracked and untracked files, as
# they are now) in a scratch copy under build/deb, into dist/.
DEB_VERSION := $(shell head -n 1 debian/changelog | cut -d' ' -f2 | tr -d '()')
DEB_FILE    := dist/aiohook_$(DEB_VERSION)_all.deb
DEB_SOURCES := $(shell git ls-files --cached --others --exclude-standard 2>/dev/null | \
        grep -v '^dist/' | while read -r f; do [ -f "$$f" ] && echo "$$f"; done)

deb: $(DEB_FILE)

$(DEB_FILE): $(DEB_SOURCES)
	@$(MAKE) --no-print-directory debs DEBS="$(DEB_BUILD_DEBS)"
	rm -rf build/deb && mkdir -p build/deb/aiohook-$(DEB_VERSION) dist
	git ls-files -z --cached --others --exclude-standard | grep -zv '^dist/' | \
	  tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C build/deb/aiohook-$(DEB_VERSION)
	cd build/deb/aiohook-$(DEB_VERSION) && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$$HOME" LC_ALL=C.UTF-8 \
	  dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
	  { tail -40 ../build.log; exit 1; }
	mv build/deb/aiohook_$(DEB_VERSION)_all.deb $@
	echo '*' > dist/.gitignore
	@echo "built $@"

# promtool from Debian's prometheus package, unpacked (not installed: installing
# it would start a Prometheus server on hosts with an init system).
PROMTOOL_DIR ?= $(STACK_CACHE)/promtool
PROMTOOL     := $(PROMTOOL_DIR)/usr/bin/promtool

promtool: $(PROMTOOL)

$(PROMTOOL):
	@tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download prometheus >/dev/null 2>&1 || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus >/dev/null; }; } && \
	  mkdir -p $(PROMTOOL_DIR) && dpkg-deb --fsys-tarfile prometheus_*.deb | \
	  tar -xf - -C $(PROMTOOL_DIR) ./usr/bin/promtool && cd / && rm -rf $$tmp && \
	  echo "promtool: $$($(PROMTOOL) --version 2>&1 | head -1)" || \
	  { cd / ; rm -rf $$tmp; echo "could not unpack promtool from Debian's prometheus package"; \
	    exit 1; }

# Runs the fleet tests (package, role, alerts) first, in their own pytest run:
# their chroot copies of the modern stack need it unmounted, and the libvirt
# tests keep it mounted until their session ends.
FLEET_TESTS := tests/test_package_deb.py tests/test_ansible_role.py tests/test_prometheus_rules.py
TEST_ENV := AIOHOOK_MODERN_ROOT=$(STACK_CACHE)/stack-modern AIOHOOK_GUEST_DIR=$(STACK_CACHE)/guest \
        AIOHOOK_DEB=$(CURDIR)/$(DEB_FILE) AIOHOOK_PROMTOOL=$(PROMTOOL)

test: debs venv stacks
	@$(MAKE) --no-print-directory deb promtool || \
	  echo "make deb or make promtool failed: the tests that need them say why"
	@rc=0; \
	$(TEST_ENV) $(PY) -m pytest -q $(PYTEST_ARGS) $(FLEET_TESTS) || { r=$$?; [ $$r = 5 ] || rc=$$r; }; \
	$(TEST_ENV) $(PY) -m pytest -q $(PYTEST_ARGS) $(addprefix --ignore=,$(FLEET_TESTS)) || \
	  { r=$$?; [ $$r = 5 ] || rc=$$r; }; \
	exit $$rc

bench: venv
	$(PY) benchmarks/plan_bench.py
	$(PY) benchmarks/hook_cost.py

lint: venv
	$(VENV)/bin/ruff check aiohook tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
