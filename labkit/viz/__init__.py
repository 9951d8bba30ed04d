"""labkit.viz: the four visual instruments, each in three layers (DESIGN.md §3).

=================  ================================  ==============================  ======================
instrument         extract / record (numpy, pandas)   plot (returns a Figure)         explore (ipywidgets)
=================  ================================  ==============================  ======================
attention          attention_scores,                  plot_attention,                 explore_attention
                   attention_summary                  plot_attention_grid,
                                                      plot_head_summary
convolution        convolve2d, convolution_steps,     plot_convolution_step(s),       explore_convolution,
                   pool2d, conv_filters,              plot_pooling, plot_filters,     explore_feature_maps
                   feature_maps                       plot_feature_maps
batch norm         BatchNormRecorder, activations,    plot_batchnorm_stats,           explore_batchnorm
                   activation_table                   plot_activation_distributions
gradient flow      GradientFlowRecorder,              plot_gradient_flow,             explore_gradient_flow
                   input_gradients_over_time          plot_gradient_profile,
                                                      plot_gradients_over_time
=================  ================================  ==============================  ======================

Plots never call ``plt.show()``: in a notebook, show the returned figure (or let it display).
The models these work on are built by :mod:`labkit.models`; the data come from :mod:`labkit.data`.
"""
from labkit.viz.attention import (attention_layers, attention_scores, attention_summary, explore_attention,
                                  plot_attention, plot_attention_grid, plot_head_summary)
from labkit.viz.batchnorm import (BatchNormRecorder, activation_table, activations, batchnorm_layers,
                                  explore_batchnorm, plot_activation_distributions, plot_batchnorm_stats,
                                  saturated_fraction)
from labkit.viz.convolution import (COURSE_IMAGE, EDGE_IMAGE, VERTICAL_EDGE, conv_filters, conv_layers, convolution_steps,
                                    convolve2d, explore_convolution, explore_feature_maps, feature_maps, output_size,
                                    plot_convolution_step, plot_convolution_steps, plot_feature_maps, plot_filters,
                                    plot_pooling, pool2d)
from labkit.viz.gradients import (GradientFlowRecorder, early_late_ratio, explore_gradient_flow,
                                  input_gradients_over_time, plot_gradient_flow, plot_gradient_profile,
                                  plot_gradients_over_time)

__all__ = [name for name in dir() if not name.startswith("_")]
