"""`devdax conformance`: the scenario suite run on real Debian kernels under QEMU, the project's oracle.

kernels (fetch and unpack a Debian kernel) -> initramfs (busybox, the modules, an init script) ->
boot (QEMU with emulated NVDIMMs; the host's root shared read-only over 9p) -> guest (inside the VM:
carve devices, run the kernel backend, report each step on a serial line) -> record (the recorded
runs in tests/kernel-results/, read by `devdax scenario diff` and the test suite).
"""
