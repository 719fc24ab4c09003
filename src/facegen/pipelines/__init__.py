"""Inference only: load a trained model, generate faces, edit photos. No training code here."""

from facegen.pipelines.edit import EditOutput, EditPipeline
from facegen.pipelines.generate import GenerationOutput, GenerationPipeline

__all__ = ["EditOutput", "EditPipeline", "GenerationOutput", "GenerationPipeline"]
