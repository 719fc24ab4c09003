"""Inference only: load a trained model, generate faces, edit photos. No training code here."""

from facegen.pipelines.generate import GenerationOutput, GenerationPipeline

__all__ = ["GenerationOutput", "GenerationPipeline"]
