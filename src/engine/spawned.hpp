// Spawned: coroutines a session starts beside its own (status updates, the provider monitor)
// that use the session, so that it waits for them to end before it returns and is destroyed.
// Private to engine/.
#pragma once

#include <utility>  // before Asio (Boost 1.74)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <functional>

namespace authsync::engine {

class Spawned {
public:
    explicit Spawned(const boost::asio::any_io_executor& ex)
        : ex_(ex), done_(ex, boost::asio::steady_timer::time_point::max()) {}

    // Starts `work`; `report` gets its failure, if any.
    void spawn(boost::asio::awaitable<void> work, std::function<void(std::exception_ptr)> report) {
        ++running_;
        boost::asio::co_spawn(ex_, std::move(work),
                              [this, report = std::move(report)](std::exception_ptr e) {
                                  if (report) report(e);
                                  if (--running_ == 0) done_.cancel();
                              });
    }
    // Until every one has ended (the caller has told them to stop).
    boost::asio::awaitable<void> wait() {
        while (running_ > 0) {
            boost::system::error_code ec;
            co_await done_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        }
    }

private:
    boost::asio::any_io_executor ex_;
    boost::asio::steady_timer done_;
    int running_ = 0;
};

}  // namespace authsync::engine
