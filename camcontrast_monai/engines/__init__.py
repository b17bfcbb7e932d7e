from camcontrast_monai.engines.baselines import MultiViewTrainer
from camcontrast_monai.engines.distributed import (
    BroadcastBuffers,
    LogitsAndCAMs,
    broadcast_module_state,
    check_global_batch,
    distributed_rank,
    distributed_world_size,
    evaluation_sampler,
    gather_with_grad,
)
from camcontrast_monai.engines.embeddings import EmbeddingWriter
from camcontrast_monai.engines.evaluation import (
    combination_logits,
    evaluate_best_model,
    label_combination_logits,
    trivial_test_score,
)
from camcontrast_monai.engines.handlers import (
    EncoderSnapshots,
    EpochSeeding,
    History,
    ProgressBar,
    ResumableCheckpoint,
    latest_checkpoint,
)
from camcontrast_monai.engines.heatmaps import generate_heatmaps, heatmap_id
from camcontrast_monai.engines.multilabel import MultilabelStage1Trainer
from camcontrast_monai.engines.optimizers import fused_supported, named_optimizer
from camcontrast_monai.engines.stage1 import (
    stage1_additional_metrics,
    stage1_loss,
    stage1_loss_keys,
    stage1_metrics,
    stage1_postprocessing,
)
from camcontrast_monai.engines.trainers import (
    BatchAugmentingTrainer,
    FinetuneTrainer,
    ForwardLossTrainer,
    Stage1Trainer,
    Stage2Trainer,
    autocast_context,
    bf16_supported,
    resolve_autocast_dtype,
)

__all__ = [
    "BatchAugmentingTrainer",
    "BroadcastBuffers",
    "EmbeddingWriter",
    "EncoderSnapshots",
    "EpochSeeding",
    "FinetuneTrainer",
    "ForwardLossTrainer",
    "History",
    "LogitsAndCAMs",
    "MultiViewTrainer",
    "MultilabelStage1Trainer",
    "ProgressBar",
    "ResumableCheckpoint",
    "Stage1Trainer",
    "Stage2Trainer",
    "autocast_context",
    "bf16_supported",
    "broadcast_module_state",
    "check_global_batch",
    "combination_logits",
    "distributed_rank",
    "distributed_world_size",
    "evaluate_best_model",
    "evaluation_sampler",
    "gather_with_grad",
    "generate_heatmaps",
    "heatmap_id",
    "label_combination_logits",
    "latest_checkpoint",
    "fused_supported",
    "named_optimizer",
    "resolve_autocast_dtype",
    "stage1_additional_metrics",
    "stage1_loss",
    "stage1_loss_keys",
    "stage1_metrics",
    "stage1_postprocessing",
    "trivial_test_score",
]
