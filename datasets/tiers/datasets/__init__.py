"""tiers.datasets: LeRobotDataset I/O, the recorder, the language-motion labeler and the corrections log."""
