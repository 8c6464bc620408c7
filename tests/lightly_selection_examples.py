"""Lightly's documented ``selection_config`` examples, verbatim, each with the place it was published.

Sources are files of the public lightly-ai/lightly repository (its Worker docs lived there until 2023)
at the commit named, and the docs.lightly.ai pages. Placeholders the docs ask the user to replace
(``DATASET_ID_OF_THE_QUERY_IMAGES``) are kept here; the tests substitute them, nothing else.
"""

from __future__ import annotations

from typing import Any

SELECTION_RST = "lightly-ai/lightly@8950f0e5^ docs/source/docker/getting_started/selection.rst"

EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        f"{SELECTION_RST} 'Visual Diversity (CORESET)'",
        {
            "n_samples": 100,
            "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}],
        },
    ),
    (
        f"{SELECTION_RST} 'Active Learning'",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {
                        "type": "SCORES",
                        "task": "my_object_detection_task",
                        "score": "uncertainty_entropy",
                    },
                    "strategy": {"type": "WEIGHTS"},
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} 'Visual Diversity and Active Learning (CORAL)'",
        {
            "n_samples": 100,
            "strategies": [
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
                {
                    "input": {
                        "type": "SCORES",
                        "task": "my_object_detection_task",
                        "score": "uncertainty_entropy",
                    },
                    "strategy": {"type": "WEIGHTS"},
                },
            ],
        },
    ),
    (
        f"{SELECTION_RST} 'Metadata Thresholding'",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {"type": "METADATA", "key": "lightly.sharpness"},
                    "strategy": {"type": "THRESHOLD", "threshold": 20, "operation": "BIGGER"},
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} 'Object Balancing'",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {
                        "type": "PREDICTIONS",
                        "task": "lightly_pretagging",
                        "name": "CLASS_DISTRIBUTION",
                    },
                    "strategy": {
                        "type": "BALANCE",
                        "target": {
                            "car": 0.1,
                            "bicycle": 0.5,
                            "bus": 0.1,
                            "motorcycle": 0.1,
                            "person": 0.1,
                            "train": 0.05,
                            "truck": 0.05,
                        },
                    },
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} 'Metadata Balancing'",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {"type": "METADATA", "key": "weather.description"},
                    "strategy": {"type": "BALANCE", "target": {"sunny": 0.2, "cloudy": 0.4}},
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} 'Similarity Search'",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {
                        "type": "EMBEDDINGS",
                        "dataset_id": "DATASET_ID_OF_THE_QUERY_IMAGES",
                        "tag_name": "TAG_NAME_OF_THE_QUERY_IMAGES",
                    },
                    "strategy": {"type": "SIMILARITY"},
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} DIVERSITY tab (stopping_condition_minimum_distance)",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {"type": "EMBEDDINGS"},
                    "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.2},
                }
            ],
        },
    ),
    (
        f"{SELECTION_RST} THRESHOLD tab (BIGGER_EQUAL) + docs.lightly.ai/docs/selection-strategies strength",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {"type": "METADATA", "key": "lightly.sharpness"},
                    "strategy": {"type": "THRESHOLD", "threshold": 20, "operation": "BIGGER_EQUAL"},
                },
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY", "strength": 0.6}},
            ],
        },
    ),
    (
        "lightly-ai/lightly@fc722bf0^ docs/source/docker/advanced/code_examples/"
        "python_run_datapool_example.py",
        {
            "n_samples": 100,
            "strategies": [
                {
                    "input": {"type": "EMBEDDINGS"},
                    "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.1},
                }
            ],
        },
    ),
    (
        "lightly-ai/lightly@fc722bf0^ docs/source/docker/examples/academic_datasets.rst (Cityscapes)",
        {
            "proportion_samples": 1.0,
            "strategies": [
                {
                    "input": {"type": "EMBEDDINGS"},
                    "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.2},
                }
            ],
        },
    ),
    (
        "lightly-ai/lightly@fc722bf0^ docs/source/docker/integration/examples/trigger_job.py",
        {
            "n_samples": 50,
            "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}],
        },
    ),
]
