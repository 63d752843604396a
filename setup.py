"""Build hook for the optional C++ extension; the package metadata lives in pyproject.toml.

``tsformer._keras_attention`` (src/tsformer/csrc/keras_attention.cpp, the seed's C = 1
attention kernel) is built with ``torch.utils.cpp_extension`` when torch is importable at build
time, which needs an install without build isolation once torch is present:

    pip install --no-build-isolation -e ".[test]"      (what scripts/setup.sh does)

torch is deliberately not in ``[build-system] requires``: an isolated build would download a
multi-GB torch just to compile one file, and an extension built against that torch would not
match the torch installed at run time anyway.  Without torch, without a C++ compiler, or when
the compile fails, the install still succeeds with the pure-Python package and
``tsformer.models.keras_attention`` uses its PyTorch implementation (``native_available()`` is
False).  ``TSFORMER_BUILD_NATIVE=0`` skips the extension.

Flags are portable (no ``-march=native``, so a wheel or a shared install runs on any CPU of its
architecture); the kernel compiles its hot loops for AVX2 and AVX-512 as well and picks one at
import.
"""

from __future__ import annotations

import os
import sys
import time

from setuptools import setup

SOURCE = "src/tsformer/csrc/keras_attention.cpp"


def _note(msg: str) -> None:
    print(f"tsformer setup: {msg}", file=sys.stderr)


def _native_build() -> dict:
    if os.environ.get("TSFORMER_BUILD_NATIVE", "1") == "0":
        _note("TSFORMER_BUILD_NATIVE=0: the C++ attention kernel is not built")
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as exc:  # noqa: BLE001 - any failure means: no extension
        _note(f"torch is not importable here ({type(exc).__name__}: {exc}); installing without "
              "the C++ attention kernel (pure-PyTorch fallback). Install torch first and use "
              "pip install --no-build-isolation to build it.")
        return {}

    if sys.platform == "win32":
        cflags, lflags = ["/O2", "/openmp"], []
    elif sys.platform == "darwin":  # Apple clang has no -fopenmp; torch's pool still threads
        cflags, lflags = ["-O3", "-fopenmp-simd", "-ffp-contract=fast"], []
    else:
        # -fopenmp: at::parallel_for's OpenMP region is compiled into the extension, and the
        # extension then shares torch's libgomp.so.1 (same soname, already loaded).
        # -ffp-contract=fast: FMA in the AVX2/AVX-512 variants (ISO C++ mode turns it off);
        # -fno-trapping-math: lets the AVX2 loops vectorise; -g0: Python's own CFLAGS may say
        # -g, and libtorch's headers' debug info makes a 5.8 MB module (0.3 MB) and a 28 s
        # compile (19 s).
        cflags = ["-O3", "-fopenmp", "-ffp-contract=fast", "-fno-math-errno",
                  "-fno-trapping-math", "-fno-strict-aliasing", "-g0"]
        lflags = ["-fopenmp"]

    class OptionalBuildExtension(BuildExtension):
        """Never fails the install: a missing compiler or a compile error leaves the package
        without the extension (reported here and by ``native_available()``)."""

        def build_extension(self, ext):  # noqa: ANN001
            t0 = time.perf_counter()
            try:
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001
                _note(f"building {ext.name} failed ({type(exc).__name__}: {exc}); installing "
                      "without the C++ attention kernel (pure-PyTorch fallback)")
                return
            _note(f"built {ext.name} in {time.perf_counter() - t0:.1f} s")

        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # noqa: BLE001 - e.g. no compiler found by the ABI check
                _note(f"C++ extension build skipped ({type(exc).__name__}: {exc}); installing "
                      "without the C++ attention kernel (pure-PyTorch fallback)")

        def get_outputs(self):  # noqa: ANN201 - only what was really built
            return [p for p in super().get_outputs() if os.path.exists(p)]

    ext = CppExtension(
        "tsformer._keras_attention", [SOURCE],
        extra_compile_args=cflags, extra_link_args=lflags, optional=True,
    )
    return {
        "ext_modules": [ext],
        "cmdclass": {"build_ext": OptionalBuildExtension.with_options(use_ninja=False)},
    }


setup(**_native_build())
