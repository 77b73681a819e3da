"""Build script: the packages of DESIGN.md and the compiled chip planner `chipping._planner`.

torch is a runtime dependency only; the extension is plain C++17 + pybind11.
"""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "chipping": "chipping",
    "sniper": "projects/sniper/sniper",
    "autofocus": "projects/autofocus/autofocus",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, root in PACKAGE_ROOTS.items():
        packages.append(name)
        package_dir[name] = root
        for sub in find_packages(root):
            packages.append(f"{name}.{sub}")
            package_dir[f"{name}.{sub}"] = f"{root}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

ext_modules = [
    Pybind11Extension(
        "chipping._planner",
        sources=[
            "chipping/csrc/sniper_chips.cpp",
            "chipping/csrc/focus_chips.cpp",
            "chipping/csrc/bindings.cpp",
        ],
        include_dirs=["chipping/csrc"],
        cxx_std=17,
        extra_compile_args=["-O3", "-ffp-contract=off"],
    )
]

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
