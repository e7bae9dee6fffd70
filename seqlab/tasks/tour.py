"""The tour's Applications sections: the lecture's supervised sequence tasks, and its
sequential prediction and control problems, each a small version trained within the tour's
time, under its own heading (``run_parts``); the benchmarks in ``benchmarks/`` measure the full
versions against their anchors."""

from __future__ import annotations

from seqlab.tour.context import TourContext, run_parts
from seqlab.viz.report import Section

APPLICATIONS = (
    ("Machine translation: a recurrent encoder-decoder with attention, and the Transformer",
     "seqlab.tasks.translate_tour:translate"),
    ("Image captioning: a convolutional encoder and an attending recurrent decoder", "seqlab.tasks.caption_tour:caption"),
    ("Speech recognition: log-mel features, a bidirectional recurrent encoder and CTC", "seqlab.tasks.asr_tour:asr"),
    # after speech recognition: in full mode it takes its durations from that part's recogniser
    ("Text to speech: durations from CTC alignments, a length regulator and Griffin-Lim", "seqlab.tasks.tts_tour:tts"),
)


def applications(ctx: TourContext, sec: Section) -> str:
    """"Speech recognition. Text to speech. Machine translation. Image captioning": each
    application's small version, under its own heading."""
    sec.text("The lecture lists the supervised tasks that recurrent networks and Transformers are used for: "
             "\"Speech recognition. Text to speech. Machine translation. Image captioning (combines with "
             "convolutional networks).\" Each part below trains a small version of one of them on generated data "
             "within the tour's time, and says so; the benchmarks train the full versions and measure them "
             "against their anchors.")
    return run_parts(ctx, sec, APPLICATIONS)


PREDICTION_AND_CONTROL = (
    ("Time series and stock prices: recurrent and Transformer forecasters against ARIMA",
     "seqlab.tasks.forecast_tour:forecast"),
    ("Online handwriting: pen positions to text with CTC, and text to pen positions with a mixture density network",
     "seqlab.tasks.handwriting_tour:handwriting"),
    ("Robot control: a recurrent actor-critic trained with PPO on partially observed tasks",
     "seqlab.tasks.control_tour:control"),
)


def prediction_and_control(ctx: TourContext, sec: Section) -> str:
    """"Handwriting recognition", "Time series prediction", "Robot control": each problem's
    small version, under its own heading."""
    sec.text("The lecture names \"other similar sequential control or prediction problems\": online handwriting "
             "recognition (\"input is a sequence of pen positions, not an image\"), time series prediction (\"for "
             "example, stock price prediction\") and robot control (\"and other dynamic control tasks\"). Each part "
             "below trains a small version within the tour's time and says so; the benchmarks train the full "
             "versions against their anchors (ARIMA and exponential smoothing, the random walk, a non-recurrent "
             "network, sb3-contrib's RecurrentPPO).")
    return run_parts(ctx, sec, PREDICTION_AND_CONTROL)
