from camcontrast_monai.engines.embeddings import EmbeddingWriter
from camcontrast_monai.engines.evaluation import evaluate_best_model
from camcontrast_monai.engines.handlers import (
    EpochSeeding,
    History,
    ProgressBar,
    ResumableCheckpoint,
    latest_checkpoint,
)
from camcontrast_monai.engines.heatmaps import generate_heatmaps, heatmap_id
from camcontrast_monai.engines.trainers import Stage1Trainer, Stage2Trainer, autocast_context

__all__ = [
    "EmbeddingWriter",
    "EpochSeeding",
    "History",
    "ProgressBar",
    "ResumableCheckpoint",
    "Stage1Trainer",
    "Stage2Trainer",
    "autocast_context",
    "evaluate_best_model",
    "generate_heatmaps",
    "heatmap_id",
    "latest_checkpoint",
]
