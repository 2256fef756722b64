#pragma once
// Cluster descriptions in YAML (config/clusters/*.yaml), for planning machines that are not here.
// Format:
//
//   name: two-nodes-8xh100
//   intra_node_link: NVLink 4          # link profile between devices on one node (optional)
//   inter_node_link: InfiniBand NDR    # link profile between nodes (optional)
//   process_link: loopback TCP         # link profile between two processes of one node, for plans of
//   process_collective_link: loopback TCP  # `partita launch`: messages; collectives (optional; default:
//                                      #   estimates from the node's CPU)
//   devices:
//     - profile: H100 SXM              # a device profile of the hardware database
//       count: 8                       # default 1
//       node: node0                    # default "node0"
//       ids: [a, b, ...]               # optional, `count` ids; default "<node>/gpuK" (cpuK for CPUs), K
//                                      #   counting per node and prefix
//       cores: 1                       # CPUs only, optional: each device is a group of this many cores
//   links:                             # optional explicit links, they win over the defaults
//     - between: [node0/gpu0, node0/gpu1]
//       link: NVLink 3
//
// Every pair of devices must have a link (explicit, intra-node or inter-node); a cluster where some pair has
// none is rejected. Loading is pure; the result is a value.
#include <string>

#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"

namespace partita {

// Throws partita::Error "FILE:LINE: device entry 2: field 'profile' ..." for a bad field; unknown profile
// names list the close matches in `db`.
Cluster load_cluster(const std::string& path, const HardwareDb& db);
// Same from YAML text; `file_label` stands for the file name in messages.
Cluster parse_cluster(const std::string& yaml_text, const std::string& file_label, const HardwareDb& db);

// Throws partita::Error naming the first pair of devices with no link between them and what to add; also
// rejects duplicate device ids.
void check_cluster_connected(const Cluster& cluster);

}  // namespace partita
