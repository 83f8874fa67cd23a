"""Extension list only; all metadata lives in pyproject.toml.

Every native/NAME.pyx becomes the module appliance._native.NAME. Link flags belong in the
.pyx header (`# distutils: libraries = speexdsp`), so adding a module needs no edit here.
"""
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    import numpy
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build environment problem
    sys.exit(
        f"building the appliance needs Cython and numpy ({exc}). "
        "Install them (`pip install cython numpy`) or use `pip install .`, which does it for you."
    )

HERE = Path(__file__).parent
extensions = [
    Extension(
        f"appliance._native.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "native").glob("*.pyx"))
]



class BuildExt(build_ext):
    """Turn a compiler failure into a message that says what to install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, missing gcc (PlatformError/OSError)
            sys.exit(
                f"compiling the native audio core failed: {exc}\n"
                "It needs a C compiler, the Python headers and libspeexdsp. On Debian/Raspberry Pi OS: "
                "apt-get install gcc python3-dev libspeexdsp-dev pkg-config"
            )


setup(ext_modules=cythonize(extensions, language_level=3, quiet=True), cmdclass={"build_ext": BuildExt})
