// One inspection driven from Kotlin on the JVM through the generated uniffi bindings and JNA,
// against a real server that uniffi/tests/server.rs starts. As an Android app would: log in,
// sync, answer the items, take a photo, sign, submit, and see the supervisor's return.
//
// Run as: java -Djna.library.path=<dir of libsuiji_uniffi> -cp app.jar:jna.jar InspectionKt
//   <server url> <username> <password> <inspector id> <record id> <store dir> <photo file>
// Between steps it prints `STEP <name>` and waits for a line `go` on stdin, while the test
// does what the partner and the supervisor do on their side.

import java.io.File
import uniffi.suiji_uniffi.*

fun step(name: String) {
    println("STEP $name")
    System.out.flush()
    val line = readLine() ?: error("stdin closed before step $name")
    check(line == "go") { "unexpected `$line` at step $name" }
}

fun main(args: Array<String>) {
    val (url, username, password, inspectorId, recordId) = args
    val storeDir = args[5]
    val photoFile = File(args[6])

    val store = MobileStore.open(storeDir, inspectorId)
    var credentials = store.logIn(url, username, password)
    fun sync(): SyncReport {
        val report = store.sync(url, credentials, null)
        report.credentials?.let { credentials = it }
        check(report.complete) { "sync incomplete: $report" }
        return report
    }

    val first = sync()
    check(recordId in first.newRecords) { "the assigned record arrives: $first" }
    val task = store.listTasks().single { it.recordId == recordId }
    check(task.status == "open") { task.toString() }

    // Answer every item on the phone, offline.
    val record = store.record(recordId)
    val items = record.items()
    check(items.isNotEmpty())
    for (item in items) {
        record.setChecked(item.code, true)
        record.setMethods(item.code, listOf("on_site"))
        record.setFinding(item.code, "现场核查，未发现问题")
    }
    record.setResultCategories(listOf("no_problem"))
    record.setFollowUp("none", null, null)
    val photo = record.importPhoto(items[0].code, photoFile.readBytes(), "门头照片")
    check(record.photos().map { it.sha256 } == listOf(photo.sha256))

    // Errors cross as exceptions of their kind.
    try {
        store.record("task-0/no-such-record")
        error("an unknown record must not open")
    } catch (e: SuijiException.NotFound) {
    }
    try {
        record.setMethods(items[0].code, listOf("divination"))
        error("an unknown method must be refused")
    } catch (e: SuijiException.InvalidInput) {
    }

    // Sign on this phone, send the answers, the photo and the signature.
    record.sign(null)
    val sent = sync()
    check(recordId in sent.sent) { "the answers went up: $sent" }
    check(photo.thumbnailSha256 in sent.blobsUploaded) { "the thumbnail went up: $sent" }
    step("signed") // the partner signs on their own phone

    sync()
    check(record.signedBy().size == 2) { "both signatures: ${record.signedBy()}" }
    val submitted = record.submit()
    check(submitted.submitted) { "submitted: $submitted" }
    sync()
    step("submitted") // the supervisor returns it

    sync()
    val review = record.review()
    check(review.state == "returned") { review.toString() }
    println("RETURNED ${review.lastComment}")
    check(store.listTasks().single { it.recordId == recordId }.status == "returned")
    println("kotlin inspection: ok")
}
