#include "authsync/transport/jetstream_errors.hpp"

namespace authsync::transport {

bool transient_jetstream_error(int err_code) {
    switch (err_code) {
        case 10004:  // JSClusterIncompleteErr: some nodes did not answer in time
        case 10005:  // JSClusterNoPeersErr: no peers for the placement yet (a forming cluster)
        case 10007:  // JSClusterNotAssignedErr: this node does not hold the asset (yet)
        case 10008:  // JSClusterNotAvailErr: system temporarily unavailable (an election)
        case 10009:  // JSClusterNotLeaderErr
        case 10014:  // JSConsumerNotFoundErr: a session consumer removed once idle, or lost
        case 10041:  // JSRaftGeneralErr
        case 10059:  // JSStreamNotFoundErr: asked of a node that has not loaded it yet
        case 10118:  // JSStreamOfflineErr: its nodes are down
        case 10119:  // JSConsumerOfflineErr: likewise
            return true;
        default: return false;
    }
}

}  // namespace authsync::transport
