"""Setting aiohook up on a host, never on the hook's path: install, uninstall and
status of the libvirt hook (install.py), and `apply`, which makes persistent
domain definitions compliant through virsh (apply.py)."""
