"""ament_python build of tiers_ros: nodes as console scripts under lib/tiers_ros, launch/ and config/ under share/."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "tiers_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="tiers maintainers",
    maintainer_email="maintainers@tiers.invalid",
    description="Thin rclpy nodes over tiers (hierarchy node with safety filter and watchdog, MuJoCo sim node)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            f"hierarchy_node = {PACKAGE}.hierarchy_node:main",
            f"mujoco_sim_node = {PACKAGE}.mujoco_sim_node:main",
        ],
    },
)
